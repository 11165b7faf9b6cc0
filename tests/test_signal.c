/* Description: signals - names and kill -l, handlers that run in normal
 * context from dispatch/wait/every blocking wait, -EINTR on request, alarm
 * replacement, one run per delivery, fork resets, bad input. */
/* MP_TEST_TIMEOUT 30 */
#include "mp_test.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "internal/core.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Counts handler runs per signal; the test process is the only writer. */
static int runs[_NSIG];
static int last_sig;
static void *last_arg;

static int count_handler(int sig, void *arg)
{
    runs[sig]++;
    last_sig = sig;
    last_arg = arg;
    return 0;
}

static int interrupt_handler(int sig, void *arg)
{
    (void)arg;
    runs[sig]++;
    return 1;
}

/* Each test starts from zero counts, also when all run in one process. */
static int reset(void **state)
{
    (void)state;
    memset(runs, 0, sizeof runs);
    last_sig = 0;
    last_arg = NULL;
    return 0;
}

static int total_runs(void)
{
    int n = 0;
    for (int i = 0; i < _NSIG; i++)
        n += runs[i];
    return n;
}

static void block(int sig, bool on)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    assert_int_equal(pthread_sigmask(on ? SIG_BLOCK : SIG_UNBLOCK, &s, NULL), 0);
}

/* A helper child: waits for the go byte, then sends `count` signals `sig` to
 * `target`, each once the target sleeps (if `when_asleep`). */
struct sender {
    pid_t target;
    int sig;
    int count;
    bool when_asleep;
    int go[2];
};

static int sender_main(void *arg)
{
    struct sender *s = arg;
    mp_test_await(s->go, 10000);
    for (int i = 0; i < s->count; i++) {
        if (s->when_asleep && !mp_test_pid_sleeping(s->target, 10000))
            return 2;
        while (kill(s->target, s->sig) != 0)
            if (errno != EAGAIN) /* the real-time queue is full: retry */
                return 3;
    }
    return 0;
}

/* CPU time this process used, in ms: tells a sleep from a busy loop. */
static int64_t cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void reap_ok(pid_t pid)
{
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- names and kill -l ------------------------------------------------------ */

static void name_of_every_signal(void **state)
{
    (void)state;
    assert_string_equal(mp_signal_name(SIGKILL), "SIGKILL");
    assert_string_equal(mp_signal_name(SIGHUP), "SIGHUP");
    assert_string_equal(mp_signal_name(SIGALRM), "SIGALRM");
    assert_string_equal(mp_signal_name(SIGRTMIN), "SIGRTMIN");
    assert_string_equal(mp_signal_name(SIGRTMIN + 3), "SIGRTMIN+3");
    assert_string_equal(mp_signal_name(SIGRTMAX), "SIGRTMAX");
    assert_string_equal(mp_signal_name(SIGRTMAX - 2), "SIGRTMAX-2");
    assert_null(mp_signal_name(0));
    assert_null(mp_signal_name(-1));
    assert_null(mp_signal_name(SIGRTMAX + 1));
    assert_null(mp_signal_name(INT32_MAX));
    assert_null(mp_signal_name(INT32_MIN));
    for (int sig = 32; sig < SIGRTMIN; sig++) /* the C library's own */
        assert_null(mp_signal_name(sig));
    /* every name maps back to its number, and names are distinct */
    for (int sig = 1; sig <= SIGRTMAX; sig++) {
        const char *n = mp_signal_name(sig);
        if (!n)
            continue;
        assert_int_equal(mp_signal_number(n), sig);
        assert_int_equal(mp_signal_number(n + 3), sig);
        for (int j = 1; j < sig; j++)
            if (mp_signal_name(j))
                assert_string_not_equal(mp_signal_name(j), n);
    }
}

static void number_parses_names_and_numbers(void **state)
{
    (void)state;
    assert_int_equal(mp_signal_number("KILL"), SIGKILL);
    assert_int_equal(mp_signal_number("SIGKILL"), SIGKILL);
    assert_int_equal(mp_signal_number("kill"), SIGKILL);
    assert_int_equal(mp_signal_number("sigKill"), SIGKILL);
    assert_int_equal(mp_signal_number("9"), 9);
    assert_int_equal(mp_signal_number("15"), SIGTERM);
    assert_int_equal(mp_signal_number("SIGRTMIN+3"), SIGRTMIN + 3);
    assert_int_equal(mp_signal_number("RTMIN"), SIGRTMIN);
    assert_int_equal(mp_signal_number("rtmax-1"), SIGRTMAX - 1);
    assert_int_equal(mp_signal_number("SIGRTMAX"), SIGRTMAX);
    assert_int_equal(mp_signal_number("SIGRTMIN+0"), SIGRTMIN);
    /* bash accepts the "wrong half" too: RTMIN+20 is RTMAX-10 */
    assert_int_equal(mp_signal_number("SIGRTMIN+20"), SIGRTMIN + 20);
    assert_int_equal(mp_signal_number("SIGIOT"), SIGABRT);
    assert_int_equal(mp_signal_number("POLL"), SIGIO);
    assert_int_equal(mp_signal_number("SIGCLD"), SIGCHLD);
    char buf[16];
    snprintf(buf, sizeof buf, "%d", SIGRTMAX);
    assert_int_equal(mp_signal_number(buf), SIGRTMAX);
}

static void number_rejects_garbage(void **state)
{
    (void)state;
    static const char *bad[] = {
        "", "SIG", "0", "-9", "+9", " 9", "9 ", "9x", "x9", "99", "65", "1000",
        "32", "33", "KIL", "KILLL", "SIGSIGKILL", "RTMIN+", "RTMIN-1",
        "RTMAX+1", "RTMIN+99", "RTMIN+31", "RTMIN+1x", "RTMINIMUM", "SIGRT",
        "UNUSED", "99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (mp_signal_number(bad[i]) != -EINVAL)
            fail_msg("mp_signal_number(\"%s\") = %d", bad[i], mp_signal_number(bad[i]));
    assert_int_equal(mp_signal_number(NULL), -EINVAL);
}

static void list_is_kill_l(void **state)
{
    (void)state;
    int total = mp_signal_list(NULL, 0);
    assert_int_equal(total, 31 + (SIGRTMAX - SIGRTMIN + 1));
    mp_signal_info *all = calloc((size_t)total + 1, sizeof *all);
    assert_non_null(all);
    all[total].number = -77; /* a guard past the end */
    assert_int_equal(mp_signal_list(all, (size_t)total), total);
    assert_int_equal(all[total].number, -77);
    for (int i = 0; i < total; i++) {
        assert_non_null(all[i].name);
        assert_non_null(all[i].meaning);
        assert_non_null(all[i].action_name);
        assert_string_equal(all[i].name, mp_signal_name(all[i].number));
        if (i > 0)
            assert_true(all[i].number > all[i - 1].number);
    }
    assert_int_equal(all[0].number, 1);
    assert_int_equal(all[30].number, 31);
    assert_int_equal(all[31].number, SIGRTMIN);
    assert_int_equal(all[total - 1].number, SIGRTMAX);
    /* a short array: filled up to cap, the total still returned */
    mp_signal_info few[4];
    memset(few, 0, sizeof few);
    assert_int_equal(mp_signal_list(few, 3), total);
    assert_int_equal(few[2].number, 3);
    assert_int_equal(few[3].number, 0);
    assert_int_equal(mp_signal_list(NULL, 1), -EINVAL);
    free(all);
}

static void describe_default_actions(void **state)
{
    (void)state;
    static const struct {
        int sig;
        mp_signal_action act;
        const char *name;
    } want[] = {
        { SIGKILL, MP_SIGACT_TERM, "terminate" }, { SIGTERM, MP_SIGACT_TERM, "terminate" },
        { SIGALRM, MP_SIGACT_TERM, "terminate" }, { SIGSEGV, MP_SIGACT_CORE, "core" },
        { SIGQUIT, MP_SIGACT_CORE, "core" },      { SIGCHLD, MP_SIGACT_IGNORE, "ignore" },
        { SIGWINCH, MP_SIGACT_IGNORE, "ignore" }, { SIGURG, MP_SIGACT_IGNORE, "ignore" },
        { SIGSTOP, MP_SIGACT_STOP, "stop" },      { SIGTSTP, MP_SIGACT_STOP, "stop" },
        { SIGCONT, MP_SIGACT_CONT, "continue" },
    };
    mp_signal_info in;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        MP_ASSERT_OK(mp_signal_describe(want[i].sig, &in));
        assert_int_equal(in.number, want[i].sig);
        assert_int_equal(in.action, want[i].act);
        assert_string_equal(in.action_name, want[i].name);
    }
    MP_ASSERT_OK(mp_signal_describe(SIGRTMIN + 1, &in));
    assert_int_equal(in.action, MP_SIGACT_TERM);
    assert_string_equal(in.name, "SIGRTMIN+1");
    in.number = 12345;
    assert_int_equal(mp_signal_describe(0, &in), -EINVAL);
    assert_int_equal(mp_signal_describe(SIGRTMAX + 1, &in), -EINVAL);
    assert_int_equal(in.number, 12345); /* unchanged on failure */
    assert_int_equal(mp_signal_describe(SIGKILL, NULL), -EINVAL);
}

/* ---- handlers run in normal context ------------------------------------------ */

static bool handler_saw_unblocked;

static int mask_probe(int sig, void *arg)
{
    (void)arg;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    /* Inside the async handler every signal is blocked (full sa_mask). */
    handler_saw_unblocked = !sigismember(&cur, SIGUSR2) && !sigismember(&cur, sig);
    runs[sig]++;
    return 0;
}

static void handler_runs_in_normal_context(void **state)
{
    (void)state;
    int token;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, &token));
    assert_int_equal(mp_signal_dispatch(), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    /* the delivery is recorded, not run */
    assert_int_equal(runs[SIGUSR1], 0);
    assert_int_equal(mp_signal_dispatch(), 1);
    assert_int_equal(runs[SIGUSR1], 1);
    assert_int_equal(last_sig, SIGUSR1);
    assert_ptr_equal(last_arg, &token);
    assert_int_equal(mp_signal_dispatch(), 0);

    MP_ASSERT_OK(mp_signal_on(SIGUSR1, mask_probe, NULL));
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(mp_signal_dispatch(), 1);
    assert_int_equal(runs[SIGUSR1], 2);
    assert_true(handler_saw_unblocked);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
}

/* The installed disposition: no SA_RESTART, every signal masked. */
static void real_handler_flags(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, count_handler, NULL));
    struct sigaction sa;
    assert_int_equal(sigaction(SIGUSR2, NULL, &sa), 0);
    assert_true(sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
    assert_false(sa.sa_flags & SA_RESTART);
    assert_true(sigismember(&sa.sa_mask, SIGINT));
    assert_true(sigismember(&sa.sa_mask, SIGUSR1));
    assert_true(sigismember(&sa.sa_mask, SIGRTMIN));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
    assert_int_equal(sigaction(SIGUSR2, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
}

/* A handler is ordinary code: printf and malloc while the main loop itself
 * mallocs and signals keep arriving from another process. */
static FILE *devnull;

static int heavy_handler(int sig, void *arg)
{
    (void)arg;
    char *p = malloc(100 + (size_t)runs[sig] % 4000);
    assert_non_null(p);
    int n = snprintf(p, 100, "signal %s number %d", mp_signal_name(sig), runs[sig]);
    fprintf(devnull, "%s %d\n", p, n);
    free(p);
    runs[sig]++;
    return 0;
}

static void handler_may_printf_and_malloc(void **state)
{
    (void)state;
    devnull = fopen("/dev/null", "w");
    assert_non_null(devnull);
    int sig = SIGRTMIN + 1;
    MP_ASSERT_OK(mp_signal_on(sig, heavy_handler, NULL));
    enum { N = 3000 };
    struct sender s = { .target = getpid(), .sig = sig, .count = N };
    mp_test_pipe(s.go);
    pid_t pid = mp_test_fork(sender_main, &s);
    mp_test_signal(s.go);
    int64_t end = mp_test_now_ms() + 20000;
    unsigned seed = 1;
    while (runs[sig] < N && mp_test_now_ms() < end) {
        void *blocks[16];
        for (int i = 0; i < 16; i++) {
            blocks[i] = malloc((size_t)(rand_r(&seed) % 8192) + 1);
            assert_non_null(blocks[i]);
            memset(blocks[i], i, 1);
        }
        for (int i = 0; i < 16; i++)
            free(blocks[i]);
        mp_signal_dispatch();
    }
    reap_ok(pid);
    mp_signal_dispatch();
    assert_int_equal(runs[sig], N); /* real-time: every one sent ran once */
    MP_ASSERT_OK(mp_signal_on(sig, NULL, NULL));
    fclose(devnull);
    close(s.go[0]);
    close(s.go[1]);
}

/* ---- one delivery, one run ------------------------------------------------------ */

static void rt_signals_each_run_once(void **state)
{
    (void)state;
    int sig = SIGRTMIN + 2;
    MP_ASSERT_OK(mp_signal_on(sig, count_handler, NULL));
    block(sig, true);
    for (int i = 0; i < 50; i++)
        assert_int_equal(sigqueue(getpid(), sig, (union sigval){ .sival_int = i }), 0);
    assert_int_equal(mp_signal_dispatch(), 0); /* still blocked in the kernel */
    block(sig, false); /* the kernel delivers all 50 now */
    assert_int_equal(mp_signal_dispatch(), 50);
    assert_int_equal(runs[sig], 50);
    assert_int_equal(mp_signal_dispatch(), 0);
    MP_ASSERT_OK(mp_signal_on(sig, NULL, NULL));
}

static void distinct_std_signals_each_run_once(void **state)
{
    (void)state;
    static const int sigs[] = { SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGWINCH, SIGCONT };
    sigset_t set, old;
    sigemptyset(&set);
    for (size_t i = 0; i < 6; i++) {
        MP_ASSERT_OK(mp_signal_on(sigs[i], count_handler, NULL));
        sigaddset(&set, sigs[i]);
    }
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(raise(sigs[i]), 0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    assert_int_equal(mp_signal_dispatch(), 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(runs[sigs[i]], 1);
    /* While blocked, the kernel keeps one instance of a standard signal:
     * three sends are one delivery, hence one run. */
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    assert_int_equal(mp_signal_dispatch(), 1);
    assert_int_equal(runs[SIGUSR1], 2);
    /* Unblocked, each send is its own delivery. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(mp_signal_dispatch(), 3);
    assert_int_equal(runs[SIGUSR1], 5);
    for (size_t i = 0; i < 6; i++)
        MP_ASSERT_OK(mp_signal_on(sigs[i], NULL, NULL));
}

/* Signals from another process, counted through mp_signal_wait. */
static void signals_from_child_all_run(void **state)
{
    (void)state;
    int sig = SIGRTMIN + 4;
    MP_ASSERT_OK(mp_signal_on(sig, count_handler, NULL));
    struct sender s = { .target = getpid(), .sig = sig, .count = 500 };
    mp_test_pipe(s.go);
    pid_t pid = mp_test_fork(sender_main, &s);
    mp_test_signal(s.go);
    int got = 0;
    for (int i = 0; i < 500; i++) {
        int which = 0;
        MP_ASSERT_OK(mp_signal_wait(&which, 10000));
        assert_int_equal(which, sig);
        got++;
    }
    assert_int_equal(runs[sig], 500);
    assert_int_equal(got, 500);
    reap_ok(pid);
    int which;
    MP_ASSERT_ERR(mp_signal_wait(&which, 0), -EAGAIN); /* no 501st */
    MP_ASSERT_OK(mp_signal_on(sig, NULL, NULL));
    close(s.go[0]);
    close(s.go[1]);
}

/* ---- blocking calls and handlers ------------------------------------------------- */

/* A handler returning non-zero ends a wait that had no deadline: the word
 * wait under every lock/event/queue wait. */
static void nonzero_interrupts_wait_word(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGALRM, interrupt_handler, NULL));
    uint32_t word = 0;
    mp__deadline dl = mp__deadline_from_ms(MP_FOREVER);
    int64_t t0 = mp_test_now_ms();
    assert_true(mp_signal_alarm(50) >= 0);
    MP_ASSERT_ERR(mp__wait_word(&word, 0, &dl), -EINTR);
    int64_t took = mp_test_now_ms() - t0;
    assert_int_equal(runs[SIGALRM], 1);
    assert_true(took >= 49); /* ITIMER_REAL may round a little */
    assert_true(took < 5000);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
}

/* The same for the fd wait under pipes, connections and process joins. */
static void nonzero_interrupts_wait_poll(void **state)
{
    (void)state;
    int p[2];
    mp_test_pipe(p);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, interrupt_handler, NULL));
    struct pollfd pfd = { .fd = p[0], .events = POLLIN };
    mp__deadline dl = mp__deadline_from_ms(MP_FOREVER);
    int64_t t0 = mp_test_now_ms();
    assert_true(mp_signal_alarm(50) >= 0);
    MP_ASSERT_ERR(mp__wait_poll(&pfd, 1, &dl), -EINTR);
    int64_t took = mp_test_now_ms() - t0;
    assert_int_equal(runs[SIGALRM], 1);
    assert_true(took >= 49);
    assert_true(took < 5000);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
    close(p[0]);
    close(p[1]);
}

/* A handler returning 0 runs during the wait, which still ends at its
 * original deadline. */
static void zero_keeps_wait_word_deadline(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGALRM, count_handler, NULL));
    uint32_t word = 0;
    int64_t t0 = mp_test_now_ms();
    mp__deadline dl = mp__deadline_from_ms(300);
    assert_true(mp_signal_alarm(60) >= 0);
    MP_ASSERT_ERR(mp__wait_word(&word, 0, &dl), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_int_equal(runs[SIGALRM], 1); /* ran inside the wait */
    assert_true(took >= 300);
    assert_true(took < 5000);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
}

static void zero_keeps_wait_poll_deadline(void **state)
{
    (void)state;
    int p[2];
    mp_test_pipe(p);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, count_handler, NULL));
    struct pollfd pfd = { .fd = p[0], .events = POLLIN };
    int64_t t0 = mp_test_now_ms();
    int64_t cpu0 = cpu_ms();
    mp__deadline dl = mp__deadline_from_ms(300);
    assert_true(mp_signal_alarm(60) >= 0);
    MP_ASSERT_ERR(mp__wait_poll(&pfd, 1, &dl), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    /* slept, not spun on a readable self-pipe */
    assert_true(cpu_ms() - cpu0 < 100);
    assert_int_equal(runs[SIGALRM], 1);
    assert_true(took >= 300);
    assert_true(took < 5000);
    /* timeout 0 still says -EAGAIN with handlers installed */
    dl = mp__deadline_from_ms(0);
    MP_ASSERT_ERR(mp__wait_poll(&pfd, 1, &dl), -EAGAIN);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
    close(p[0]);
    close(p[1]);
}

/* Several signals during one timed wait: each handled once, the deadline
 * unchanged. */
static void many_signals_during_wait(void **state)
{
    (void)state;
    int sig = SIGRTMIN + 5;
    MP_ASSERT_OK(mp_signal_on(sig, count_handler, NULL));
    struct sender s = { .target = getpid(), .sig = sig, .count = 5, .when_asleep = true };
    mp_test_pipe(s.go);
    pid_t pid = mp_test_fork(sender_main, &s);
    uint32_t word = 0;
    mp_test_signal(s.go);
    int64_t t0 = mp_test_now_ms();
    mp__deadline dl = mp__deadline_from_ms(400);
    int rc;
    while ((rc = mp__wait_word(&word, 0, &dl)) == 0)
        ; /* no one changes the word */
    int64_t took = mp_test_now_ms() - t0;
    MP_ASSERT_ERR(rc, -ETIMEDOUT);
    assert_true(took >= 400);
    assert_true(took < 10000);
    reap_ok(pid);
    mp_signal_dispatch(); /* any that came after the deadline */
    assert_int_equal(runs[sig], 5);
    MP_ASSERT_OK(mp_signal_on(sig, NULL, NULL));
    close(s.go[0]);
    close(s.go[1]);
}

/* A signal sent by another process while this one sleeps in a wait. */
static void child_signal_interrupts_sleeping_wait(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, interrupt_handler, NULL));
    struct sender s = { .target = getpid(), .sig = SIGUSR1, .count = 1, .when_asleep = true };
    mp_test_pipe(s.go);
    pid_t pid = mp_test_fork(sender_main, &s);
    mp_test_signal(s.go);
    uint32_t word = 0;
    mp__deadline dl = mp__deadline_from_ms(20000); /* bounded if the helper fails */
    MP_ASSERT_ERR(mp__wait_word(&word, 0, &dl), -EINTR);
    assert_int_equal(runs[SIGUSR1], 1);
    reap_ok(pid);
    /* and again for a poll wait */
    s.count = 1;
    pid = mp_test_fork(sender_main, &s);
    mp_test_signal(s.go);
    int p[2];
    mp_test_pipe(p);
    struct pollfd pfd = { .fd = p[0], .events = POLLIN };
    MP_ASSERT_ERR(mp__wait_poll(&pfd, 1, &dl), -EINTR);
    assert_int_equal(runs[SIGUSR1], 2);
    reap_ok(pid);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    close(p[0]);
    close(p[1]);
    close(s.go[0]);
    close(s.go[1]);
}

/* ---- real blocking calls: a lock wait and a queue get ------------------------------ */

/* Shared with a helper child that holds the lock until told. */
struct holder {
    mp_lock lock;
    int go[2];   /* child -> test: the lock is held */
    int done[2]; /* test -> child: release it and exit */
};

static int lock_holder(void *arg)
{
    struct holder *h = arg;
    if (mp_lock_acquire(&h->lock, 5000) != 0)
        return 2;
    mp_test_signal(h->go);
    mp_test_await(h->done, 20000); /* hold it until the test is done */
    mp_lock_release(&h->lock);
    return 0;
}

static void lock_wait_interrupted(void **state)
{
    (void)state;
    struct holder *h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(h != MAP_FAILED);
    MP_ASSERT_OK(mp_lock_init(&h->lock));
    mp_test_pipe(h->go);
    mp_test_pipe(h->done);
    pid_t pid = mp_test_fork(lock_holder, h);
    mp_test_await(h->go, 10000);

    /* a handler returning non-zero ends a wait without deadline */
    MP_ASSERT_OK(mp_signal_on(SIGALRM, interrupt_handler, NULL));
    int64_t t0 = mp_test_now_ms();
    assert_true(mp_signal_alarm(50) >= 0);
    MP_ASSERT_ERR(mp_lock_acquire(&h->lock, MP_FOREVER), -EINTR);
    assert_true(mp_test_now_ms() - t0 >= 49);
    assert_int_equal(runs[SIGALRM], 1);

    /* a handler returning 0 leaves the timed wait at its deadline */
    MP_ASSERT_OK(mp_signal_on(SIGALRM, count_handler, NULL));
    t0 = mp_test_now_ms();
    assert_true(mp_signal_alarm(60) >= 0);
    MP_ASSERT_ERR(mp_lock_acquire(&h->lock, 300), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_int_equal(runs[SIGALRM], 2);
    assert_true(took >= 300);
    assert_true(took < 5000);

    /* and the lock still works afterwards */
    mp_test_signal(h->done);
    reap_ok(pid);
    MP_ASSERT_OK(mp_lock_acquire(&h->lock, 5000));
    MP_ASSERT_OK(mp_lock_release(&h->lock));
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
    for (int i = 0; i < 2; i++) {
        close(h->go[i]);
        close(h->done[i]);
    }
    munmap(h, sizeof *h);
}

static void queue_get_interrupted(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){ .maxsize = 1 }));
    MP_ASSERT_OK(mp_signal_on(SIGALRM, interrupt_handler, NULL));
    char buf[16];
    size_t len = 0;
    int64_t t0 = mp_test_now_ms();
    assert_true(mp_signal_alarm(50) >= 0);
    MP_ASSERT_ERR(mp_queue_get(q, buf, sizeof buf, &len, MP_FOREVER), -EINTR);
    assert_true(mp_test_now_ms() - t0 >= 49);
    assert_int_equal(runs[SIGALRM], 1);

    /* a put blocked on a full queue too */
    MP_ASSERT_OK(mp_queue_put(q, "a", 1, 0));
    assert_true(mp_signal_alarm(50) >= 0);
    MP_ASSERT_ERR(mp_queue_put(q, "b", 1, MP_FOREVER), -EINTR);
    assert_int_equal(runs[SIGALRM], 2);

    /* a handler returning 0: the timed get still ends at its deadline */
    MP_ASSERT_OK(mp_queue_get(q, buf, sizeof buf, &len, 0));
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], 'a'); /* nothing lost or doubled */
    MP_ASSERT_OK(mp_signal_on(SIGALRM, count_handler, NULL));
    t0 = mp_test_now_ms();
    assert_true(mp_signal_alarm(60) >= 0);
    MP_ASSERT_ERR(mp_queue_get(q, buf, sizeof buf, &len, 300), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_int_equal(runs[SIGALRM], 3);
    assert_true(took >= 300);
    assert_true(took < 5000);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
    mp_queue_free(q);
}

/* ---- processes started by mproc -------------------------------------------------- */

static int term_seen;

static int on_term(int sig, void *arg)
{
    (void)arg;
    term_seen = sig;
    return 1;
}

/* In an mp_process child: no parent handler; its own work; then a graceful
 * exit on SIGTERM through a handler it installs itself. */
static int process_target(void *arg)
{
    int *ready = arg;
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    if (sa.sa_handler != SIG_DFL)
        return 10;
    sigaction(SIGTERM, NULL, &sa);
    if (sa.sa_handler != SIG_DFL)
        return 11;
    if (mp_signal_dispatch() != 0)
        return 12;
    if (mp_signal_on(SIGTERM, on_term, NULL) != 0)
        return 13;
    mp_test_signal(ready);
    int sig = 0;
    int rc = mp_signal_wait(&sig, 20000);
    if (rc != -EINTR || sig != SIGTERM || term_seen != SIGTERM)
        return 14;
    return 42; /* a clean exit, code of our choosing */
}

static void process_children_and_join(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGTERM, count_handler, NULL));
    raise(SIGUSR1); /* pending here: must not run in the child */
    int ready[2];
    mp_test_pipe(ready);
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, process_target, ready, NULL));
    MP_ASSERT_OK(mp_process_start(p));
    mp_test_await(ready, 10000);

    /* a join interrupted by a handler, then completed */
    MP_ASSERT_OK(mp_signal_on(SIGALRM, interrupt_handler, NULL));
    assert_true(mp_signal_alarm(50) >= 0);
    MP_ASSERT_ERR(mp_process_join(p, MP_FOREVER), -EINTR);
    assert_int_equal(runs[SIGALRM], 1);
    assert_int_equal(runs[SIGUSR1], 1); /* ran here, in a wait of start or join */
    MP_ASSERT_OK(mp_process_terminate(p));
    MP_ASSERT_OK(mp_process_join(p, 10000));
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 42);
    mp_process_free(p);
    assert_int_equal(runs[SIGTERM], 0);
    /* no SIGCHLD handler appeared */
    struct sigaction sa;
    sigaction(SIGCHLD, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGTERM, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
    close(ready[0]);
    close(ready[1]);
}

/* ---- mp_signal_wait ----------------------------------------------------------- */

static void signal_wait_returns_signal(void **state)
{
    (void)state;
    int sig = 0;
    MP_ASSERT_ERR(mp_signal_wait(&sig, 0), -EAGAIN);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_signal_wait(&sig, 80), -ETIMEDOUT);
    assert_true(mp_test_now_ms() - t0 >= 80);
    assert_int_equal(sig, 0);

    MP_ASSERT_OK(mp_signal_on(SIGUSR2, count_handler, NULL));
    assert_int_equal(raise(SIGUSR2), 0);
    MP_ASSERT_OK(mp_signal_wait(&sig, 0)); /* already pending: no wait */
    assert_int_equal(sig, SIGUSR2);
    assert_int_equal(runs[SIGUSR2], 1);
    assert_int_equal(raise(SIGUSR2), 0);
    MP_ASSERT_OK(mp_signal_wait(NULL, MP_FOREVER)); /* sig may be NULL */
    assert_int_equal(runs[SIGUSR2], 2);

    /* pause(): the alarm comes while waiting forever */
    MP_ASSERT_OK(mp_signal_on(SIGALRM, count_handler, NULL));
    t0 = mp_test_now_ms();
    assert_true(mp_signal_alarm(70) >= 0);
    MP_ASSERT_OK(mp_signal_wait(&sig, MP_FOREVER));
    assert_int_equal(sig, SIGALRM);
    assert_true(mp_test_now_ms() - t0 >= 69);
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
}

static void signal_wait_one_handler_per_call(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, count_handler, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGRTMIN, count_handler, NULL));
    block(SIGUSR1, true);
    block(SIGUSR2, true);
    block(SIGRTMIN, true);
    raise(SIGUSR2);
    raise(SIGUSR1);
    raise(SIGRTMIN);
    raise(SIGRTMIN);
    block(SIGUSR1, false);
    block(SIGUSR2, false);
    block(SIGRTMIN, false);
    int want[] = { SIGUSR1, SIGUSR2, SIGRTMIN, SIGRTMIN };
    for (int i = 0; i < 4; i++) {
        int sig = 0;
        MP_ASSERT_OK(mp_signal_wait(&sig, 1000));
        assert_int_equal(sig, want[i]);
        assert_int_equal(total_runs(), i + 1);
    }
    int sig;
    MP_ASSERT_ERR(mp_signal_wait(&sig, 0), -EAGAIN);
    assert_int_equal(mp_signal_dispatch(), 0);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGRTMIN, NULL, NULL));
}

static void signal_wait_reports_eintr(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, interrupt_handler, NULL));
    raise(SIGUSR1);
    int sig = 0;
    MP_ASSERT_ERR(mp_signal_wait(&sig, 1000), -EINTR);
    assert_int_equal(sig, SIGUSR1);
    assert_int_equal(runs[SIGUSR1], 1);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
}

/* A caller's own sigaction handler (not mproc's) */
static volatile sig_atomic_t raw_hits;
static void raw_handler(int sig)
{
    (void)sig;
    raw_hits++;
}

/* Signals without an mproc handler do not end the wait or move its deadline. */
static void signal_wait_ignores_unhandled(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, NULL)); /* module in use */
    MP_ASSERT_OK(mp_signal_ignore(SIGUSR2));
    struct sigaction sa = { .sa_handler = raw_handler };
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
    int64_t t0 = mp_test_now_ms();
    raise(SIGUSR2);
    assert_true(mp_signal_alarm(40) >= 0);
    int sig = 0;
    MP_ASSERT_ERR(mp_signal_wait(&sig, 250), -ETIMEDOUT);
    assert_true(mp_test_now_ms() - t0 >= 250);
    assert_int_equal(raw_hits, 1);
    assert_int_equal(total_runs(), 0);
    assert_int_equal(sig, 0);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGALRM, &sa, NULL);
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
}

/* ---- alarm --------------------------------------------------------------------- */

static void alarm_replaces_previous(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGALRM, count_handler, NULL));
    /* the seed's alarm(3) then alarm(8), scaled down */
    int64_t t0 = mp_test_now_ms();
    assert_int_equal(mp_signal_alarm(150), 0);
    int left = mp_signal_alarm(400);
    assert_true(left > 0 && left <= 150);
    int sig = 0;
    MP_ASSERT_OK(mp_signal_wait(&sig, 5000));
    int64_t took = mp_test_now_ms() - t0;
    assert_int_equal(sig, SIGALRM);
    assert_true(took >= 399);
    assert_true(took < 5000);
    /* the replaced alarm never fires */
    MP_ASSERT_ERR(mp_signal_wait(&sig, 250), -ETIMEDOUT);
    assert_int_equal(runs[SIGALRM], 1);
    /* a shorter one replaces a long one too; the old value is returned */
    assert_int_equal(mp_signal_alarm(60000), 0);
    left = mp_signal_alarm(50);
    assert_true(left > 55000 && left <= 60000);
    MP_ASSERT_OK(mp_signal_wait(&sig, 5000));
    assert_int_equal(runs[SIGALRM], 2);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
}

static void alarm_zero_cancels(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGALRM, count_handler, NULL));
    assert_int_equal(mp_signal_alarm(80), 0);
    assert_true(mp_signal_alarm(0) > 0);
    assert_int_equal(mp_signal_alarm(0), 0); /* nothing left to cancel */
    int sig;
    MP_ASSERT_ERR(mp_signal_wait(&sig, 250), -ETIMEDOUT);
    assert_int_equal(runs[SIGALRM], 0);
    MP_ASSERT_ERR(mp_signal_alarm(-1), -EINVAL);
    MP_ASSERT_ERR(mp_signal_alarm(INT32_MIN), -EINVAL);
    /* the largest timeout is accepted (and cancelled) */
    assert_int_equal(mp_signal_alarm(INT32_MAX), 0);
    assert_true(mp_signal_alarm(0) > INT32_MAX - 10000);
    MP_ASSERT_OK(mp_signal_on(SIGALRM, NULL, NULL));
}

/* Without a handler, SIGALRM ends the process: seed example 1. */
static int alarm_child(void *arg)
{
    (void)arg;
    mp_signal_alarm(100);
    mp_signal_alarm(200);
    mp_signal_wait(NULL, MP_FOREVER);
    return 9; /* not reached */
}

static void alarm_default_ends_process(void **state)
{
    (void)state;
    int64_t t0 = mp_test_now_ms();
    pid_t pid = mp_test_fork(alarm_child, NULL);
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGALRM);
    assert_true(mp_test_now_ms() - t0 >= 199);
}

/* ---- dispositions ---------------------------------------------------------------- */

static int restore_child(void *arg)
{
    (void)arg;
    if (mp_signal_on(SIGUSR1, count_handler, NULL) != 0)
        return 2;
    raise(SIGUSR1);
    if (mp_signal_dispatch() != 1)
        return 3;
    if (mp_signal_on(SIGUSR1, NULL, NULL) != 0)
        return 4;
    raise(SIGUSR1); /* the default action: terminate */
    return 5;
}

static void null_handler_restores_default(void **state)
{
    (void)state;
    pid_t pid = mp_test_fork(restore_child, NULL);
    int st = mp_test_waitpid(pid, 10000);
    if (WIFEXITED(st))
        fail_msg("child exited with %d", WEXITSTATUS(st));
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGUSR1);
}

static void ignore_and_pending(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_ignore(SIGUSR1));
    raise(SIGUSR1); /* would kill if not ignored */
    assert_int_equal(mp_signal_dispatch(), 0);
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    assert_true(sa.sa_handler == SIG_IGN);

    /* removing a handler drops its pending deliveries */
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, NULL));
    raise(SIGUSR1);
    MP_ASSERT_OK(mp_signal_ignore(SIGUSR1));
    assert_int_equal(mp_signal_dispatch(), 0);
    assert_int_equal(runs[SIGUSR1], 0);

    /* replacing a handler keeps them: they run the new one */
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, interrupt_handler, NULL));
    raise(SIGUSR1);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, NULL));
    assert_int_equal(mp_signal_dispatch(), 1);
    assert_int_equal(last_sig, SIGUSR1);
    assert_int_equal(runs[SIGUSR1], 1);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
}

/* A handler may change handlers, its own included. */
static int self_removing(int sig, void *arg)
{
    (void)arg;
    runs[sig]++;
    return mp_signal_on(sig, NULL, NULL) == 0 ? 0 : 1;
}

static void handler_may_remove_itself(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGWINCH, self_removing, NULL));
    raise(SIGWINCH);
    assert_int_equal(mp_signal_dispatch(), 1);
    raise(SIGWINCH); /* default for SIGWINCH: ignore */
    assert_int_equal(mp_signal_dispatch(), 0);
    assert_int_equal(runs[SIGWINCH], 1);
}

static void bad_arguments(void **state)
{
    (void)state;
    static const int bad[] = { 0, -1, 32, 33, 65, 1000, INT32_MIN, INT32_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        MP_ASSERT_ERR(mp_signal_on(bad[i], count_handler, NULL), -EINVAL);
        MP_ASSERT_ERR(mp_signal_on(bad[i], NULL, NULL), -EINVAL);
        MP_ASSERT_ERR(mp_signal_ignore(bad[i]), -EINVAL);
        MP_ASSERT_ERR(mp_signal_send(getpid(), bad[i] == 0 ? -5 : bad[i]), -EINVAL);
    }
    MP_ASSERT_ERR(mp_signal_on(SIGKILL, count_handler, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_signal_on(SIGSTOP, count_handler, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_signal_on(SIGKILL, NULL, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_signal_ignore(SIGKILL), -EINVAL);
    MP_ASSERT_ERR(mp_signal_ignore(SIGSTOP), -EINVAL);
    MP_ASSERT_ERR(mp_signal_ignore(SIGCHLD), -EINVAL);
    static const int faults[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS };
    for (size_t i = 0; i < 6; i++) {
        MP_ASSERT_ERR(mp_signal_on(faults[i], count_handler, NULL), -EINVAL);
        MP_ASSERT_OK(mp_signal_on(faults[i], NULL, NULL)); /* default is fine */
    }
    MP_ASSERT_ERR(mp_signal_send(0, SIGTERM), -EINVAL);
    MP_ASSERT_ERR(mp_signal_send(-1, SIGTERM), -EINVAL);
    MP_ASSERT_ERR(mp_signal_send(-getpid(), SIGTERM), -EINVAL);
    MP_ASSERT_OK(mp_signal_send(getpid(), 0)); /* exists */
    /* still nothing installed by all of that */
    struct sigaction sa;
    sigaction(SIGTERM, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
}

static int idle_child(void *arg)
{
    int *go = arg;
    mp_test_signal(go);
    for (;;)
        pause();
    return 0;
}

/* Seeds 5 and 12: kill a running process by pid. */
static void send_kills_by_pid(void **state)
{
    (void)state;
    int go[2];
    mp_test_pipe(go);
    pid_t pid = mp_test_fork(idle_child, go);
    mp_test_await(go, 10000);
    MP_ASSERT_OK(mp_signal_send(pid, 0));
    MP_ASSERT_OK(mp_signal_send(pid, mp_signal_number("KILL")));
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    /* reaped: the pid names no process now (pids are not reused at once) */
    MP_ASSERT_ERR(mp_signal_send(pid, 0), -ESRCH);
    MP_ASSERT_ERR(mp_signal_send(pid, SIGTERM), -ESRCH);
    close(go[0]);
    close(go[1]);
}

/* ---- fork ------------------------------------------------------------------------ */

static ino_t fd_inode(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    return st.st_ino;
}

/* What a child must see: no parent callbacks, defaults back, ignores kept,
 * its own pipe.  Exits 0 when so, else the number of the failed check;
 * `shared` counts parent callbacks run in the child (must stay 0). */
static int *shared_runs;

static int parent_cb(int sig, void *arg)
{
    (void)arg;
    (void)sig;
    __atomic_fetch_add(shared_runs, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static int check_child(ino_t parent_pipe)
{
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    if (sa.sa_handler != SIG_DFL)
        return 2;
    sigaction(SIGWINCH, NULL, &sa);
    if (sa.sa_handler != SIG_IGN)
        return 3;
    if (mp__sig_fd < 0 || fd_inode(mp__sig_fd) == parent_pipe)
        return 4;
    if (mp_signal_dispatch() != 0) /* the parent's pending were dropped */
        return 5;
    /* the child may install its own */
    if (mp_signal_on(SIGUSR2, count_handler, NULL) != 0)
        return 6;
    raise(SIGUSR2);
    int sig = 0;
    if (mp_signal_wait(&sig, 5000) != 0 || sig != SIGUSR2 || runs[SIGUSR2] != 1)
        return 7;
    raise(SIGUSR1); /* default: terminate by SIGUSR1 */
    return 8;
}

static void fork_child_has_no_parent_handlers(void **state)
{
    (void)state;
    shared_runs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(shared_runs != MAP_FAILED);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, parent_cb, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, parent_cb, NULL));
    MP_ASSERT_OK(mp_signal_ignore(SIGWINCH));
    ino_t parent_pipe = fd_inode(mp__sig_fd);
    assert_true(parent_pipe != 0);
    block(SIGUSR2, true);
    raise(SIGUSR2); /* pending in the kernel: the child does not inherit it */
    /* and one delivery recorded but not yet run at fork time */
    raise(SIGUSR1);

    for (int raw = 0; raw < 2; raw++) {
        int nfd = mp_test_fd_count();
        pid_t pid = raw ? fork() : mp__fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* the parent's mask, restored after the fork */
            sigset_t cur;
            pthread_sigmask(SIG_BLOCK, NULL, &cur);
            if (!sigismember(&cur, SIGUSR2) || sigismember(&cur, SIGINT) ||
                sigismember(&cur, SIGUSR1))
                _exit(30);
            block(SIGUSR2, false);
            int rc = check_child(parent_pipe);
            if (mp_test_fd_count() != nfd)
                rc = 20;
            _exit(rc);
        }
        int st = mp_test_waitpid(pid, 10000);
        if (WIFEXITED(st))
            fail_msg("%s child failed check %d", raw ? "raw" : "mp__fork", WEXITSTATUS(st));
        assert_int_equal(WTERMSIG(st), SIGUSR1);
        sigset_t cur;
        pthread_sigmask(SIG_BLOCK, NULL, &cur);
        assert_true(sigismember(&cur, SIGUSR2));
        assert_false(sigismember(&cur, SIGINT));
        assert_false(sigismember(&cur, SIGUSR1));
    }
    assert_int_equal(__atomic_load_n(shared_runs, __ATOMIC_SEQ_CST), 0);
    /* the parent is untouched: its own deliveries still run here */
    assert_int_equal(fd_inode(mp__sig_fd), parent_pipe);
    assert_int_equal(mp_signal_dispatch(), 1);
    block(SIGUSR2, false);
    assert_int_equal(mp_signal_dispatch(), 1);
    assert_int_equal(*shared_runs, 2);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGWINCH, NULL, NULL));
    munmap(shared_runs, 4096);
}

/* No SIGCHLD handler behind the user's back, before or after forks. */
static void no_sigchld_handler_installed(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGTERM, count_handler, NULL));
    pid_t pid = mp__fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    reap_ok(pid);
    struct sigaction sa;
    sigaction(SIGCHLD, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
    assert_false(sa.sa_flags & SA_SIGINFO);
    assert_int_equal(mp_signal_dispatch(), 0);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGTERM, NULL, NULL));
}

/* The self-pipe is made once: two fds for the process's life, no more. */
static void fds_made_once(void **state)
{
    (void)state;
    int n0 = mp_test_fd_count();
    bool had_pipe = mp__sig_fd >= 0; /* when every test runs in one process */
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, count_handler, NULL));
    int n1 = mp_test_fd_count();
    assert_int_equal(n1, n0 + (had_pipe ? 0 : 2));
    for (int i = 0; i < 20; i++) {
        MP_ASSERT_OK(mp_signal_on(SIGUSR2, count_handler, NULL));
        MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
        MP_ASSERT_OK(mp_signal_ignore(SIGUSR2));
        raise(SIGUSR1);
        assert_int_equal(mp_signal_dispatch(), 1);
    }
    assert_int_equal(mp_test_fd_count(), n1);
    /* close-on-exec and non-blocking */
    int fl = fcntl(mp__sig_fd, F_GETFD);
    assert_true(fl >= 0 && (fl & FD_CLOEXEC));
    fl = fcntl(mp__sig_fd, F_GETFL);
    assert_true(fl >= 0 && (fl & O_NONBLOCK));
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
}

/* ---- threads ------------------------------------------------------------------------- */

static pthread_t handler_thread;

static int thread_probe(int sig, void *arg)
{
    (void)arg;
    handler_thread = pthread_self();
    runs[sig]++;
    return 1;
}

struct waiter_arg {
    uint32_t word;
    int rc;
    pid_t tid;
    int ready[2];
};

static void *waiting_thread(void *p)
{
    struct waiter_arg *w = p;
    mp__deadline dl = mp__deadline_from_ms(20000);
    w->tid = gettid();
    mp_test_signal(w->ready);
    w->rc = mp__wait_word(&w->word, 0, &dl);
    return NULL;
}

/* A signal the kernel gives to the main thread wakes a wait in another
 * thread, and the handler runs in that (dispatching) thread. */
static void handler_runs_in_dispatching_thread(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, thread_probe, NULL));
    struct waiter_arg w = { .word = 0, .rc = 1 };
    mp_test_pipe(w.ready);
    pthread_t t;
    /* The thread must not take the signal itself: block it there. */
    block(SIGUSR1, true);
    assert_int_equal(pthread_create(&t, NULL, waiting_thread, &w), 0);
    block(SIGUSR1, false);
    mp_test_await(w.ready, 10000);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)w.tid);
    assert_true(mp_test_stat_sleeping(path, 10000)); /* the thread sleeps in its wait */
    raise(SIGUSR1); /* runs the async handler in this (main) thread */
    assert_int_equal(pthread_join(t, NULL), 0);
    MP_ASSERT_ERR(w.rc, -EINTR);
    assert_int_equal(runs[SIGUSR1], 1);
    assert_true(pthread_equal(handler_thread, t));
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    close(w.ready[0]);
    close(w.ready[1]);
}

static void *polling_thread(void *p)
{
    struct waiter_arg *w = p;
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
    mp__deadline dl = mp__deadline_from_ms(20000);
    w->tid = gettid();
    mp_test_signal(w->ready);
    w->rc = mp__wait_poll(&pfd, 1, &dl);
    close(fds[0]);
    close(fds[1]);
    return NULL;
}

/* mp_signal_wait() in one thread takes one delivery; another delivery that
 * came with it still interrupts a wait sleeping in another thread.  (The
 * interesting interleaving - this thread drains the pipe before the other
 * one looks - is rare here, so this mostly checks the common path.) */
static void wait_in_one_thread_leaves_others(void **state)
{
    (void)state;
    /* both interrupt: whichever the thread runs, its wait returns -EINTR */
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, thread_probe, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, thread_probe, NULL));
    struct waiter_arg w = { .rc = 1 };
    mp_test_pipe(w.ready);
    sigset_t both, old;
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGUSR2);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &both, &old), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, polling_thread, &w), 0);
    mp_test_await(w.ready, 10000);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)w.tid);
    assert_true(mp_test_stat_sleeping(path, 10000));
    raise(SIGUSR2);
    raise(SIGUSR1);
    /* both are delivered to this thread before pthread_sigmask returns */
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    int sig = 0;
    int rc = mp_signal_wait(&sig, 0); /* one, or none if the thread was faster */
    assert_true(rc == -EINTR || rc == -EAGAIN);
    assert_int_equal(pthread_join(t, NULL), 0);
    MP_ASSERT_ERR(w.rc, -EINTR);
    mp_signal_dispatch();
    assert_int_equal(runs[SIGUSR1], 1);
    assert_int_equal(runs[SIGUSR2], 1);
    MP_ASSERT_OK(mp_signal_on(SIGUSR1, NULL, NULL));
    MP_ASSERT_OK(mp_signal_on(SIGUSR2, NULL, NULL));
    close(w.ready[0]);
    close(w.ready[1]);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(name_of_every_signal, reset),
    cmocka_unit_test_setup(number_parses_names_and_numbers, reset),
    cmocka_unit_test_setup(number_rejects_garbage, reset),
    cmocka_unit_test_setup(list_is_kill_l, reset),
    cmocka_unit_test_setup(describe_default_actions, reset),
    cmocka_unit_test_setup(handler_runs_in_normal_context, reset),
    cmocka_unit_test_setup(real_handler_flags, reset),
    cmocka_unit_test_setup(handler_may_printf_and_malloc, reset),
    cmocka_unit_test_setup(rt_signals_each_run_once, reset),
    cmocka_unit_test_setup(distinct_std_signals_each_run_once, reset),
    cmocka_unit_test_setup(signals_from_child_all_run, reset),
    cmocka_unit_test_setup(nonzero_interrupts_wait_word, reset),
    cmocka_unit_test_setup(nonzero_interrupts_wait_poll, reset),
    cmocka_unit_test_setup(zero_keeps_wait_word_deadline, reset),
    cmocka_unit_test_setup(zero_keeps_wait_poll_deadline, reset),
    cmocka_unit_test_setup(many_signals_during_wait, reset),
    cmocka_unit_test_setup(child_signal_interrupts_sleeping_wait, reset),
    cmocka_unit_test_setup(lock_wait_interrupted, reset),
    cmocka_unit_test_setup(queue_get_interrupted, reset),
    cmocka_unit_test_setup(process_children_and_join, reset),
    cmocka_unit_test_setup(signal_wait_returns_signal, reset),
    cmocka_unit_test_setup(signal_wait_one_handler_per_call, reset),
    cmocka_unit_test_setup(signal_wait_reports_eintr, reset),
    cmocka_unit_test_setup(signal_wait_ignores_unhandled, reset),
    cmocka_unit_test_setup(alarm_replaces_previous, reset),
    cmocka_unit_test_setup(alarm_zero_cancels, reset),
    cmocka_unit_test_setup(alarm_default_ends_process, reset),
    cmocka_unit_test_setup(null_handler_restores_default, reset),
    cmocka_unit_test_setup(ignore_and_pending, reset),
    cmocka_unit_test_setup(handler_may_remove_itself, reset),
    cmocka_unit_test_setup(bad_arguments, reset),
    cmocka_unit_test_setup(send_kills_by_pid, reset),
    cmocka_unit_test_setup(fork_child_has_no_parent_handlers, reset),
    cmocka_unit_test_setup(no_sigchld_handler_installed, reset),
    cmocka_unit_test_setup(fds_made_once, reset),
    cmocka_unit_test_setup(handler_runs_in_dispatching_thread, reset),
    cmocka_unit_test_setup(wait_in_one_thread_leaves_others, reset),
};

MP_TEST_MAIN(tests)
