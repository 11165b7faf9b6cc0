/* Description: processes - start handshake, exit codes, joins with
 * timeouts, signals that never reach a reused pid, sentinels, names, daemons,
 * exit-time joins, detached starts, fork/thread safety, no leaked fds. */
/* MP_TEST_TIMEOUT 30 */
#include "mp_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "internal/core.h"
#include "internal/process.h"

/* ---- targets ------------------------------------------------------------------ */

static int ret_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

static int call_exit(void *arg)
{
    exit((int)(intptr_t)arg);
}

static int raise_sig(void *arg)
{
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    int sig = (int)(intptr_t)arg;
    signal(sig, SIG_DFL); /* cmocka catches SIGSEGV and friends */
    if (sig == SIGABRT)
        abort();
    raise(sig);
    return 0;
}

/* Every blocking target ends by itself after this long, so no child of a
 * failed test outlives it (a failed test's process would join it at exit). */
#define WATCHDOG_S 20

static int pause_forever(void *arg)
{
    (void)arg;
    alarm(WATCHDOG_S);
    for (;;)
        pause();
    return 0;
}

/* A gate: the child closes the write end (so it sees EOF if the test dies),
 * waits for one byte and returns it. */
typedef struct gate {
    int fds[2];
} gate;

static int wait_gate(void *arg)
{
    gate *g = arg;
    alarm(WATCHDOG_S);
    close(g->fds[1]);
    unsigned char c = 0;
    ssize_t n;
    while ((n = read(g->fds[0], &c, 1)) < 0 && errno == EINTR)
        ;
    return n == 1 ? c : 99;
}

static void gate_open(gate *g)
{
    mp_test_pipe(g->fds);
}

static void gate_send(gate *g, unsigned char c)
{
    assert_int_equal(write(g->fds[1], &c, 1), 1);
}

static void gate_close(gate *g)
{
    close(g->fds[0]);
    close(g->fds[1]);
}

static int pidfd_of(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Tests that watch processes they did not start through pidfds skip where
 * pidfd_open is missing (Linux < 5.3, valgrind 3.19); mproc itself falls
 * back to its sentinel pipe there, as fallback_without_pidfd tests. */
static void require_pidfd(void)
{
    int fd = pidfd_of(getpid());
    if (fd < 0 && errno == ENOSYS)
        MP_TEST_SKIP("pidfd_open(2) is not available");
    close(fd);
}

/* Polls fd for readability for up to ms; true if readable. */
static bool readable_within(int fd, int ms)
{
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    int64_t end = mp_test_now_ms() + ms;
    for (;;) {
        int left = (int)(end - mp_test_now_ms());
        int rc = poll(&pf, 1, left < 0 ? 0 : left);
        if (rc > 0)
            return true;
        if (rc == 0)
            return false;
        if (errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
    }
}

/* true when this process has no child at all (nothing left to reap). */
static bool no_children(void)
{
    siginfo_t si;
    return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD;
}

static mp_process *start_new(mp_target fn, void *arg, const mp_process_opts *opts)
{
    mp_process *p = NULL;
    MP_ASSERT_OK(mp_process_new(&p, fn, arg, opts));
    MP_ASSERT_OK(mp_process_start(p));
    return p;
}

static int join_code(mp_process *p)
{
    MP_ASSERT_OK(mp_process_join(p, 10000));
    int code = 12345;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    return code;
}

/* ---- names ---------------------------------------------------------------------- */

/* Default names count up per parent; custom names are copied. */
static void names_default_and_custom(void **state)
{
    (void)state;
    mp_process *a, *b, *c;
    MP_ASSERT_OK(mp_process_new(&a, ret_arg, NULL, NULL));
    MP_ASSERT_OK(mp_process_new(&b, ret_arg, NULL, NULL));
    char buf[16] = "worker";
    MP_ASSERT_OK(mp_process_new(&c, ret_arg, NULL, &(mp_process_opts){ .name = buf }));
    buf[0] = 'X';
    unsigned na = 0, nb = 0;
    assert_int_equal(sscanf(mp_process_name(a), "Process-%u", &na), 1);
    assert_int_equal(sscanf(mp_process_name(b), "Process-%u", &nb), 1);
    assert_int_equal(nb, na + 1);
    assert_string_equal(mp_process_name(c), "worker");
    assert_string_equal(mp_current_process_name(), "MainProcess");
    assert_int_equal(mp_process_pid(a), 0);
    mp_process_free(a);
    mp_process_free(b);
    mp_process_free(c);
}

static int check_own_name(void *arg)
{
    return strcmp(mp_current_process_name(), arg) == 0 ? 0 : 1;
}

/* In a child, mp_current_process_name() is the child's own name, default or
 * custom. */
static void current_name_in_child(void **state)
{
    (void)state;
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, check_own_name, "custom-name",
                                &(mp_process_opts){ .name = "custom-name" }));
    MP_ASSERT_OK(mp_process_start(p));
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);

    static char want[64];
    MP_ASSERT_OK(mp_process_new(&p, check_own_name, want, NULL));
    snprintf(want, sizeof want, "%s", mp_process_name(p));
    MP_ASSERT_OK(mp_process_start(p));
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);
    assert_string_equal(mp_current_process_name(), "MainProcess");
}

/* A child that starts two children of its own: they are named
 * "<its identity>:1" and ":2", report their own names, and it joins them. */
static int nested_parent(void *arg)
{
    (void)arg;
    char mine[64], want[80];
    snprintf(mine, sizeof mine, "%s", mp_current_process_name());
    if (strncmp(mine, "Process-", 8) != 0)
        return 10;
    mp_process *kids[2];
    for (int i = 0; i < 2; i++) {
        static char names[2][80];
        if (mp_process_new(&kids[i], check_own_name, names[i], NULL) < 0)
            return 11;
        snprintf(want, sizeof want, "%s:%d", mine, i + 1);
        if (strcmp(mp_process_name(kids[i]), want) != 0)
            return 12;
        snprintf(names[i], sizeof names[i], "%s", want);
        if (mp_process_start(kids[i]) < 0)
            return 13;
    }
    for (int i = 0; i < 2; i++) {
        int code = -1;
        if (mp_process_join(kids[i], 10000) < 0 || mp_process_exitcode(kids[i], &code) < 0 ||
            code != 0)
            return 14;
        mp_process_free(kids[i]);
    }
    return 0;
}

static void nested_processes(void **state)
{
    (void)state;
    mp_process *p = start_new(nested_parent, NULL, NULL);
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);
    assert_true(no_children());
}

/* ---- bad input -------------------------------------------------------------------- */

static void bad_input(void **state)
{
    (void)state;
    mp_process *p = NULL;
    int code = 0;
    MP_ASSERT_ERR(mp_process_new(NULL, ret_arg, NULL, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_process_new(&p, NULL, NULL, NULL), -EINVAL);
    assert_null(p);
    MP_ASSERT_ERR(mp_process_start(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_process_join(NULL, 0), -EINVAL);
    assert_false(mp_process_is_alive(NULL));
    assert_int_equal(mp_process_pid(NULL), 0);
    assert_null(mp_process_name(NULL));
    MP_ASSERT_ERR(mp_process_exitcode(NULL, &code), -EINVAL);
    MP_ASSERT_ERR(mp_process_terminate(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_process_kill(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_process_sentinel(NULL), -EINVAL);
    mp_process_free(NULL);

    /* not started yet */
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, NULL, &(mp_process_opts){ .name = "" }));
    assert_string_equal(mp_process_name(p), "");
    MP_ASSERT_ERR(mp_process_join(p, 0), -EINVAL);
    MP_ASSERT_ERR(mp_process_join(p, MP_FOREVER), -EINVAL);
    assert_false(mp_process_is_alive(p));
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), -EAGAIN);
    MP_ASSERT_ERR(mp_process_exitcode(p, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_process_terminate(p), -EINVAL);
    MP_ASSERT_ERR(mp_process_kill(p), -EINVAL);
    MP_ASSERT_ERR(mp_process_sentinel(p), -EINVAL);

    /* started twice */
    MP_ASSERT_OK(mp_process_start(p));
    MP_ASSERT_ERR(mp_process_start(p), -EINVAL);
    assert_int_equal(join_code(p), 0);
    MP_ASSERT_ERR(mp_process_start(p), -EINVAL);
    mp_process_free(p);

    pid_t pid;
    MP_ASSERT_ERR(mp_process_spawn_detached(NULL, ret_arg, NULL, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_process_spawn_detached(&pid, NULL, NULL, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_process_spawn_detached(&pid, ret_arg, NULL,
                                            &(mp_process_opts){ .daemon = true }),
                  -EINVAL);
}

/* ---- exit codes ---------------------------------------------------------------------- */

/* The target's return value is the exit status (its low 8 bits). */
static void exitcode_from_return(void **state)
{
    (void)state;
    static const int ret[] = { 0, 7, 255, -1, 256, 300 };
    static const int want[] = { 0, 7, 255, 255, 0, 44 };
    for (size_t i = 0; i < sizeof ret / sizeof ret[0]; i++) {
        mp_process *p = start_new(ret_arg, (void *)(intptr_t)ret[i], NULL);
        assert_true(mp_process_pid(p) > 0);
        assert_int_equal(join_code(p), want[i]);
        mp_process_free(p);
    }
}

/* exit(8) in the target: status 8. */
static void exitcode_from_exit(void **state)
{
    (void)state;
    mp_process *p = start_new(call_exit, (void *)8, NULL);
    assert_int_equal(join_code(p), 8);
    mp_process_free(p);
}

/* Death by signal N reports -N. */
static void exitcode_from_signal(void **state)
{
    (void)state;
    static const int sigs[] = { SIGABRT, SIGSEGV, SIGKILL, SIGTERM, SIGUSR1 };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        mp_process *p = start_new(raise_sig, (void *)(intptr_t)sigs[i], NULL);
        assert_int_equal(join_code(p), -sigs[i]);
        mp_process_free(p);
    }
    mp_process *t = start_new(pause_forever, NULL, NULL);
    mp_process *k = start_new(pause_forever, NULL, NULL);
    MP_ASSERT_OK(mp_process_terminate(t));
    MP_ASSERT_OK(mp_process_kill(k));
    assert_int_equal(join_code(t), -SIGTERM);
    assert_int_equal(join_code(k), -SIGKILL);
    mp_process_free(t);
    mp_process_free(k);
}

/* ---- join, is_alive, sentinel ------------------------------------------------------------- */

/* join(0) is -EAGAIN at once, join(150) -ETIMEDOUT after >= 150 ms, the
 * child still alive; once released, join returns 0 and stays 0. */
static void join_timeout_child_alive(void **state)
{
    (void)state;
    gate g;
    gate_open(&g);
    mp_process *p = start_new(wait_gate, &g, NULL);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_process_join(p, 0), -EAGAIN);
    assert_true(mp_test_now_ms() - t0 < 1000);
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_process_join(p, 150), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 150);
    assert_true(took < 5000);
    assert_true(mp_process_is_alive(p));
    int code;
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), -EAGAIN);
    gate_send(&g, 42);
    MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    MP_ASSERT_OK(mp_process_join(p, 0));
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 42);
    assert_false(mp_process_is_alive(p));
    mp_process_free(p);
    gate_close(&g);
}

/* is_alive reaps an exited child, after which exitcode is known. */
static void is_alive_reaps(void **state)
{
    (void)state;
    require_pidfd(); /* the fallback has a window: fallback_without_pidfd */
    gate g;
    gate_open(&g);
    mp_process *p = start_new(wait_gate, &g, NULL);
    int fd = mp_process_sentinel(p);
    MP_ASSERT_OK(fd);
    assert_true(mp_process_is_alive(p));
    gate_send(&g, 3);
    assert_true(readable_within(fd, 10000));
    assert_false(mp_process_is_alive(p));
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 3);
    assert_true(no_children());
    mp_process_free(p);
    gate_close(&g);
}

/* The sentinel is not readable while the child runs, readable once it has
 * exited, and stays valid (and readable) after join until free. */
static void sentinel_polls_readable_at_exit(void **state)
{
    (void)state;
    gate g;
    gate_open(&g);
    mp_process *p = start_new(wait_gate, &g, NULL);
    int fd = mp_process_sentinel(p);
    MP_ASSERT_OK(fd);
    assert_int_equal(mp_process_sentinel(p), fd);
    assert_false(readable_within(fd, 0));
    assert_false(readable_within(fd, 50));
    gate_send(&g, 0);
    assert_true(readable_within(fd, 10000));
    MP_ASSERT_OK(mp_process_join(p, 0));
    assert_true(readable_within(fd, 0));
    assert_true(fcntl(fd, F_GETFD) >= 0);
    mp_process_free(p);
    gate_close(&g);
}

/* ---- signals ------------------------------------------------------------------------ */

/* 100 children, each terminated right after its start, all report -SIGTERM. */
static void terminate_100_right_after_start(void **state)
{
    (void)state;
    enum { N = 100 };
    mp_process *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = start_new(pause_forever, NULL, NULL);
        MP_ASSERT_OK(mp_process_terminate(p[i]));
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(join_code(p[i]), -SIGTERM);
        mp_process_free(p[i]);
    }
    assert_true(no_children());
}

/* Once reaped, terminate/kill return -ESRCH and signal nothing; before the
 * reap, an exited child can still be "signalled" (as kill(2) on a zombie). */
static void signal_after_reap_is_esrch(void **state)
{
    (void)state;
    mp_process *p = start_new(ret_arg, (void *)5, NULL);
    int fd = mp_process_sentinel(p);
    assert_true(readable_within(fd, 10000));
    MP_ASSERT_OK(mp_process_terminate(p)); /* a zombie: not yet reaped */
    assert_int_equal(join_code(p), 5);
    MP_ASSERT_ERR(mp_process_terminate(p), -ESRCH);
    MP_ASSERT_ERR(mp_process_kill(p), -ESRCH);
    assert_int_equal(join_code(p), 5); /* the status is unchanged */
    mp_process_free(p);
}

/* ---- start handshake ------------------------------------------------------------------- */

/* An error in the child's setup is start's error; no child remains; the
 * handle can be started again. */
static void start_reports_child_setup_error(void **state)
{
    (void)state;
    int fds0 = mp_test_fd_count();
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, (void *)9, NULL));
    mp__process_test_fail_setup = ENOMEM;
    MP_ASSERT_ERR(mp_process_start(p), -ENOMEM);
    mp__process_test_fail_setup = 0;
    assert_true(no_children());
    assert_int_equal(mp_process_pid(p), 0);
    MP_ASSERT_ERR(mp_process_join(p, 0), -EINVAL);

    mp__process_test_die_in_setup = 1;
    MP_ASSERT_ERR(mp_process_start(p), -ECHILD);
    mp__process_test_die_in_setup = 0;
    assert_true(no_children());

    MP_ASSERT_OK(mp_process_start(p));
    assert_int_equal(join_code(p), 9);
    mp_process_free(p);
    assert_int_equal(mp_test_fd_count(), fds0);
}


/* The handshake's sleeping wait (the path a slow child takes after the
 * short spin) reports success, setup errors and deaths alike. */
static void start_handshake_sleeping_wait(void **state)
{
    (void)state;
    int saved = mp__process_spin_ns;
    mp__process_spin_ns = 0;
    mp_process *p = start_new(ret_arg, (void *)12, NULL);
    assert_int_equal(join_code(p), 12);
    mp_process_free(p);
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, (void *)13, NULL));
    mp__process_test_fail_setup = EPERM;
    MP_ASSERT_ERR(mp_process_start(p), -EPERM);
    mp__process_test_fail_setup = 0;
    mp__process_test_die_in_setup = 1;
    MP_ASSERT_ERR(mp_process_start(p), -ECHILD);
    mp__process_test_die_in_setup = 0;
    MP_ASSERT_OK(mp_process_start(p));
    assert_int_equal(join_code(p), 13);
    mp_process_free(p);
    for (int i = 0; i < 20; i++) {
        p = start_new(pause_forever, NULL, NULL);
        MP_ASSERT_OK(mp_process_terminate(p));
        assert_int_equal(join_code(p), -SIGTERM);
        mp_process_free(p);
    }
    mp__process_spin_ns = saved;
    assert_true(no_children());
}


/* Without a free handshake slot (1024 starts in progress, or no page could
 * be mapped) start reports through a pipe instead: success, setup errors
 * and deaths alike, spinning or sleeping, and no fd is left behind. */
static void start_handshake_without_slot(void **state)
{
    (void)state;
    int saved = mp__process_spin_ns;
    int fds0 = mp_test_fd_count();
    mp__process_test_no_slot = 1;
    for (int round = 0; round < 2; round++) {
        mp__process_spin_ns = round == 0 ? saved : 0;
        mp_process *p = start_new(ret_arg, (void *)21, NULL);
        assert_int_equal(join_code(p), 21);
        mp_process_free(p);
        MP_ASSERT_OK(mp_process_new(&p, ret_arg, (void *)22, NULL));
        mp__process_test_fail_setup = EPERM;
        MP_ASSERT_ERR(mp_process_start(p), -EPERM);
        mp__process_test_fail_setup = 0;
        mp__process_test_die_in_setup = 1;
        MP_ASSERT_ERR(mp_process_start(p), -ECHILD);
        mp__process_test_die_in_setup = 0;
        assert_true(no_children());
        MP_ASSERT_OK(mp_process_start(p));
        assert_int_equal(join_code(p), 22);
        mp_process_free(p);
    }
    mp__process_test_no_slot = 0;
    mp__process_spin_ns = saved;
    assert_true(no_children());
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* A child made by a plain fork() (no mproc fork hooks ran) that starts
 * processes gets its own handshake page: while it and its parent start
 * processes at the same time, each start still gets its own child's
 * report (the parent's children all fail their setup, the raw child's all
 * succeed, so a report crossing over would show). */
static void plain_fork_child_has_own_handshake(void **state)
{
    (void)state;
    mp_process *p = start_new(ret_arg, (void *)3, NULL); /* maps our page */
    assert_int_equal(join_code(p), 3);
    mp_process_free(p);
    int go[2];
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    pid_t raw = fork();
    assert_true(raw >= 0);
    if (raw == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        for (int i = 0; i < 300; i++) {
            mp_process *q;
            int code = -1;
            if (mp_process_new(&q, ret_arg, (void *)4, NULL) != 0 ||
                mp_process_start(q) != 0 || mp_process_join(q, 10000) != 0 ||
                mp_process_exitcode(q, &code) != 0 || code != 4)
                _exit(1);
            mp_process_free(q);
        }
        _exit(0);
    }
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, (void *)5, NULL));
    mp__process_test_fail_setup = EPERM;
    assert_int_equal(write(go[1], "g", 1), 1);
    for (int i = 0; i < 300; i++)
        MP_ASSERT_ERR(mp_process_start(p), -EPERM);
    mp__process_test_fail_setup = 0;
    int st;
    assert_int_equal(waitpid(raw, &st, 0), raw);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    MP_ASSERT_OK(mp_process_start(p));
    assert_int_equal(join_code(p), 5);
    mp_process_free(p);
    close(go[0]);
    close(go[1]);
    assert_true(no_children());
}

/* mproc reaps only its own children: a raw child of the program that has
 * exited stays for the program's own waitpid, whatever mproc does
 * meanwhile (start, join, is_alive, the sweep of freed handles). */
static void never_reaps_other_children(void **state)
{
    (void)state;
    require_pidfd();
    pid_t raw = mp_test_fork(ret_arg, (void *)21);
    int rfd = pidfd_of(raw);
    assert_true(rfd >= 0);
    assert_true(readable_within(rfd, 10000)); /* it has exited: a zombie */
    for (int i = 0; i < 5; i++) {
        gate g;
        gate_open(&g);
        mp_process *p = start_new(wait_gate, &g, NULL);
        mp_process *q = start_new(ret_arg, NULL, NULL);
        mp_process_free(q); /* left to the sweep of the next start */
        MP_ASSERT_ERR(mp_process_join(p, 0), -EAGAIN);
        assert_true(mp_process_is_alive(p));
        gate_send(&g, 0);
        assert_int_equal(join_code(p), 0);
        mp_process_free(p);
        gate_close(&g);
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    assert_int_equal(waitid(P_PID, (id_t)raw, &si, WEXITED | WNOHANG), 0);
    assert_int_equal(si.si_pid, raw);
    assert_int_equal(si.si_status, 21);
    close(rfd);
}

/* ---- output and exit handlers ----------------------------------------------------------- */

static int print_child(void *arg)
{
    printf("child-%s\n", (const char *)arg);
    if (strcmp(arg, "exit") == 0)
        exit(0);
    return 0;
}

/* Reads all of fd into buf (NUL-terminated). */
static void slurp(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        len += (size_t)n;
    }
    buf[len] = '\0';
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *s = hay; (s = strstr(s, needle)) != NULL; s += strlen(needle))
        n++;
    return n;
}

/* With stdout a file or a pipe (fully buffered), text printed before a
 * start appears once; the child's own output (returned or exit()ed) is
 * flushed. */
static void no_duplicated_output(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        int fds[2];
        char path[] = "/tmp/mp_test_outXXXXXX";
        if (kind == 0) {
            fds[1] = mkstemp(path);
            assert_true(fds[1] >= 0);
            unlink(path);
            fds[0] = dup(fds[1]);
        } else {
            mp_test_pipe(fds);
        }
        fflush(stdout);
        int saved = dup(STDOUT_FILENO);
        assert_true(saved >= 0);
        assert_int_equal(dup2(fds[1], STDOUT_FILENO), STDOUT_FILENO);
        close(fds[1]);
        printf("parent-before\n"); /* buffered: a fork that does not flush copies it */
        mp_process *a = start_new(print_child, "return", NULL);
        printf("parent-middle\n");
        mp_process *b = start_new(print_child, "exit", NULL);
        MP_ASSERT_OK(mp_process_join(a, 10000));
        MP_ASSERT_OK(mp_process_join(b, 10000));
        fflush(stdout);
        assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
        close(saved);
        char buf[4096];
        if (kind == 0)
            assert_int_equal(lseek(fds[0], 0, SEEK_SET), 0);
        slurp(fds[0], buf, sizeof buf);
        close(fds[0]);
        assert_int_equal(count_of(buf, "parent-before"), 1);
        assert_int_equal(count_of(buf, "parent-middle"), 1);
        assert_int_equal(count_of(buf, "child-return"), 1);
        assert_int_equal(count_of(buf, "child-exit"), 1);
        mp_process_free(a);
        mp_process_free(b);
    }
}

static int atexit_fd = -1;

static void parent_handler(void)
{
    if (atexit_fd >= 0) {
        char c = 'H';
        (void)!write(atexit_fd, &c, 1);
    }
}

/* A child never runs the atexit handlers its parent registered, whether its
 * target returns or calls exit(). */
static void atexit_handlers_not_run_in_child(void **state)
{
    (void)state;
    int fds[2];
    mp_test_pipe(fds);
    atexit_fd = fds[1];
    assert_int_equal(atexit(parent_handler), 0);
    mp_process *a = start_new(ret_arg, (void *)0, NULL);
    mp_process *b = start_new(call_exit, (void *)4, NULL);
    assert_int_equal(join_code(a), 0);
    assert_int_equal(join_code(b), 4);
    atexit_fd = -1;
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 0); /* EOF: nobody wrote */
    close(fds[0]);
    mp_process_free(a);
    mp_process_free(b);
}

/* ---- resources ------------------------------------------------------------------------ */

static int count_children(void)
{
    /* /proc/self/task/<tid>/children lists this process's live children */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1)
        n++;
    fclose(f);
    return n;
}

/* Starting, joining and freeing processes leaks no fd (joined, or freed
 * while still running), and freeing a running process leaves no zombie. */
static void no_fd_leak(void **state)
{
    (void)state;
    require_pidfd();
    int fds0 = mp_test_fd_count();
    for (int i = 0; i < 50; i++) {
        mp_process *p = start_new(ret_arg, (void *)(intptr_t)(i & 0x7f), NULL);
        assert_int_equal(join_code(p), i & 0x7f);
        mp_process_free(p);
    }
    assert_int_equal(mp_test_fd_count(), fds0);

    /* freed while running: mproc keeps it; it is reaped after it exits */
    gate g;
    gate_open(&g);
    mp_process *p = start_new(wait_gate, &g, NULL);
    pid_t pid = mp_process_pid(p);
    int watch = pidfd_of(pid);
    assert_true(watch >= 0);
    mp_process_free(p);
    gate_send(&g, 1);
    assert_true(readable_within(watch, 10000)); /* exited (a zombie for now) */
    mp_process *q = start_new(ret_arg, NULL, NULL); /* start reaps freed children */
    assert_int_equal(join_code(q), 0);
    mp_process_free(q);
    siginfo_t si;
    assert_int_equal(waitid(P_PIDFD, (id_t)watch, &si, WEXITED | WNOHANG), -1);
    assert_int_equal(errno, ECHILD); /* reaped by mproc */
    close(watch);
    gate_close(&g);
    assert_int_equal(count_children(), 0);
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* ---- handles inherited by a child ----------------------------------------------------------- */

typedef struct sibling_arg {
    mp_process *sibling;
} sibling_arg;

static int poke_sibling(void *arg)
{
    sibling_arg *s = arg;
    int code;
    if (mp_process_join(s->sibling, 0) != -ECHILD)
        return 1;
    if (mp_process_terminate(s->sibling) != -ECHILD)
        return 2;
    if (mp_process_kill(s->sibling) != -ECHILD)
        return 3;
    if (mp_process_is_alive(s->sibling))
        return 4;
    if (mp_process_sentinel(s->sibling) != -ECHILD)
        return 5;
    if (mp_process_exitcode(s->sibling, &code) != -ECHILD)
        return 6;
    if (mp_process_pid(s->sibling) <= 0)
        return 7;
    /* the inherited pidfd was closed in the child */
    mp_process_free(s->sibling);
    return 0;
}

/* A child can neither join nor signal its siblings through the handles it
 * inherited (a child starts with an empty table). */
static void child_cannot_touch_siblings(void **state)
{
    (void)state;
    gate g;
    gate_open(&g);
    mp_process *sib = start_new(wait_gate, &g, NULL);
    sibling_arg s = { sib };
    mp_process *p = start_new(poke_sibling, &s, NULL);
    assert_int_equal(join_code(p), 0);
    assert_true(mp_process_is_alive(sib));
    gate_send(&g, 0);
    assert_int_equal(join_code(sib), 0);
    mp_process_free(sib);
    mp_process_free(p);
    gate_close(&g);
}

static int count_fds_child(void *arg)
{
    int want = (int)(intptr_t)arg;
    return mp_test_fd_count() == want ? 0 : 100 + mp_test_fd_count();
}

/* A child does not inherit the pidfds of its siblings. */
static void child_inherits_no_sibling_fds(void **state)
{
    (void)state;
    gate g;
    gate_open(&g);
    int base = mp_test_fd_count();
    mp_process *sibs[5];
    for (int i = 0; i < 5; i++)
        sibs[i] = start_new(wait_gate, &g, NULL);
    /* the child sees the fds it had before the siblings were started */
    mp_process *p = start_new(count_fds_child, (void *)(intptr_t)base, NULL);
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);
    for (int i = 0; i < 5; i++)
        gate_send(&g, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(join_code(sibs[i]), 0);
        mp_process_free(sibs[i]);
    }
    gate_close(&g);
}

/* ---- signal handlers during join --------------------------------------------------------- */

static int fake_sig_fds[2];
static int fake_handler_runs;

static int fake_sig_run(void)
{
    char c;
    if (read(fake_sig_fds[0], &c, 1) == 1) {
        fake_handler_runs++;
        return c == 'i' ? -EINTR : 0;
    }
    return 0;
}

/* join runs pending signal handlers while it waits: one that asks to
 * interrupt makes join return -EINTR, one that does not lets it go on. */
static void join_runs_handlers_and_eintr(void **state)
{
    (void)state;
    gate g;
    gate_open(&g);
    assert_int_equal(pipe2(fake_sig_fds, O_NONBLOCK | O_CLOEXEC), 0);
    mp_process *p = start_new(wait_gate, &g, NULL);
    __atomic_store_n(&mp__sig_fd, fake_sig_fds[0], __ATOMIC_RELEASE);
    __atomic_store_n(&mp__sig_run, fake_sig_run, __ATOMIC_RELEASE);
    assert_int_equal(write(fake_sig_fds[1], "c", 1), 1);
    MP_ASSERT_ERR(mp_process_join(p, 100), -ETIMEDOUT);
    assert_int_equal(fake_handler_runs, 1);
    assert_int_equal(write(fake_sig_fds[1], "i", 1), 1);
    MP_ASSERT_ERR(mp_process_join(p, MP_FOREVER), -EINTR);
    assert_int_equal(fake_handler_runs, 2);
    __atomic_store_n(&mp__sig_run, NULL, __ATOMIC_RELEASE);
    __atomic_store_n(&mp__sig_fd, -1, __ATOMIC_RELEASE);
    assert_true(mp_process_is_alive(p));
    gate_send(&g, 0);
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);
    close(fake_sig_fds[0]);
    close(fake_sig_fds[1]);
    gate_close(&g);
}

/* join's spin (before it sleeps) keeps join's contract: it ends at the
 * deadline, runs signal handlers and returns -EINTR when one asks, and
 * sees the exit.  The spin budget is made 2 s so that a spin ignoring
 * any of these would show. */
static void join_spin_keeps_deadline_and_handlers(void **state)
{
    (void)state;
    int saved = mp__process_spin_ns;
    mp__process_spin_ns = 2000000000;
    gate g;
    gate_open(&g);
    assert_int_equal(pipe2(fake_sig_fds, O_NONBLOCK | O_CLOEXEC), 0);
    mp_process *p = start_new(wait_gate, &g, NULL);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_process_join(p, 100), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 100);
    assert_true(took < 1500);
    int runs0 = fake_handler_runs;
    __atomic_store_n(&mp__sig_fd, fake_sig_fds[0], __ATOMIC_RELEASE);
    __atomic_store_n(&mp__sig_run, fake_sig_run, __ATOMIC_RELEASE);
    assert_int_equal(write(fake_sig_fds[1], "i", 1), 1);
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_process_join(p, MP_FOREVER), -EINTR);
    assert_true(mp_test_now_ms() - t0 < 1500);
    assert_int_equal(fake_handler_runs, runs0 + 1);
    __atomic_store_n(&mp__sig_run, NULL, __ATOMIC_RELEASE);
    __atomic_store_n(&mp__sig_fd, -1, __ATOMIC_RELEASE);
    gate_send(&g, 5);
    assert_int_equal(join_code(p), 5);
    mp_process_free(p);
    close(fake_sig_fds[0]);
    close(fake_sig_fds[1]);
    gate_close(&g);
    mp__process_spin_ns = saved;
}

/* ---- exit-time joins and daemons -------------------------------------------------------- */

typedef struct exit_arg {
    gate go;          /* released by the test: the non-daemonic child may finish */
    int report[2];    /* records written by the helper and its children */
    int ready[2];     /* each child writes a byte once it has reported */
    bool use_exit;    /* the helper ends with exit() (else its target returns) */
    bool free_first;  /* the helper frees its handles before it ends */
} exit_arg;

typedef struct record {
    int32_t tag; /* 'D' daemon's pid, 'N' non-daemon's pid, 'M' non-daemon done,
                    'X' the helper is about to end */
    int32_t pid;
} record;

static int put_record(int fd, int tag)
{
    record r = { tag, getpid() };
    return write(fd, &r, sizeof r) == sizeof r ? 0 : -1;
}

static int report_pid_and_pause(void *arg)
{
    exit_arg *e = arg;
    close(e->go.fds[1]);
    if (put_record(e->report[1], 'D') < 0 || write(e->ready[1], "r", 1) != 1)
        return 1;
    return pause_forever(NULL);
}

static int wait_go_and_mark(void *arg)
{
    exit_arg *e = arg;
    if (put_record(e->report[1], 'N') < 0 || write(e->ready[1], "r", 1) != 1)
        return 1;
    int c = wait_gate(&e->go);
    if (put_record(e->report[1], 'M') < 0)
        return 1;
    return c;
}

/* The helper: starts a daemon D and a non-daemon N, says "exiting" and
 * ends (exit() or return) without joining either. */
static int exiting_parent(void *arg)
{
    exit_arg *e = arg;
    mp_process *d, *n;
    if (mp_process_new(&d, report_pid_and_pause, e, &(mp_process_opts){ .daemon = true }) < 0 ||
        mp_process_new(&n, wait_go_and_mark, e, NULL) < 0 || mp_process_start(d) < 0 ||
        mp_process_start(n) < 0)
        return 50;
    close(e->go.fds[1]);
    /* both children have reported (else ending now could SIGTERM the
     * daemon before it said who it is) */
    char r[2];
    for (size_t got = 0; got < 2;) {
        ssize_t k = read(e->ready[0], r + got, 2 - got);
        if (k <= 0)
            return 52;
        got += (size_t)k;
    }
    if (e->free_first) {
        mp_process_free(d);
        mp_process_free(n);
    }
    if (put_record(e->report[1], 'X') < 0)
        return 51;
    if (e->use_exit)
        exit(6);
    return 6;
}

static record read_record(int fd)
{
    record r = { 0, 0 };
    assert_true(readable_within(fd, 10000));
    assert_int_equal(read(fd, &r, sizeof r), (ssize_t)sizeof r);
    return r;
}

/* A pidfd for pid, or -1 if it is already gone. */
static int pidfd_or_gone(pid_t pid)
{
    int fd = pidfd_of(pid);
    assert_true(fd >= 0 || errno == ESRCH);
    return fd;
}

/* Runs exiting_parent in a process (an mproc child, or a raw fork that calls
 * exit(), as a program's main would) and checks: its daemon is terminated
 * when it ends, its non-daemonic child is joined (it does not exit before
 * that child does), and its exit status is its own. */
static void check_exit_joins(bool raw, bool use_exit, bool free_first)
{
    require_pidfd();
    exit_arg e = { .use_exit = use_exit, .free_first = free_first };
    gate_open(&e.go);
    mp_test_pipe(e.report);
    mp_test_pipe(e.ready);
    mp_process *h = NULL;
    pid_t raw_pid = 0;
    int hfd;
    if (raw) {
        e.use_exit = true;
        raw_pid = mp_test_fork(exiting_parent, &e);
        hfd = pidfd_of(raw_pid);
    } else {
        h = start_new(exiting_parent, &e, NULL);
        hfd = dup(mp_process_sentinel(h));
    }
    assert_true(hfd >= 0);
    pid_t dpid = 0, npid = 0;
    bool ending = false;
    for (int i = 0; i < 3; i++) {
        record r = read_record(e.report[0]);
        if (r.tag == 'D')
            dpid = r.pid;
        else if (r.tag == 'N')
            npid = r.pid;
        else if (r.tag == 'X')
            ending = true;
        else
            fail_msg("unexpected record %d", r.tag);
    }
    assert_true(dpid > 0 && npid > 0 && ending);
    int dfd = pidfd_or_gone(dpid), nfd = pidfd_or_gone(npid);
    assert_true(nfd >= 0); /* it waits for the gate */
    /* The daemon dies (SIGTERM at the helper's end)... */
    if (dfd >= 0)
        assert_true(readable_within(dfd, 5000));
    /* ...while the helper waits for its non-daemonic child. */
    assert_false(readable_within(hfd, 100));
    assert_false(readable_within(nfd, 0));
    gate_send(&e.go, 7);
    record m = read_record(e.report[0]);
    assert_int_equal(m.tag, 'M');
    assert_true(readable_within(hfd, 10000));
    if (raw) {
        int st = mp_test_waitpid(raw_pid, 10000);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 6);
    } else {
        assert_int_equal(join_code(h), 6);
        mp_process_free(h);
    }
    if (dfd >= 0)
        close(dfd);
    close(nfd);
    close(hfd);
    close(e.report[0]);
    close(e.report[1]);
    close(e.ready[0]);
    close(e.ready[1]);
    gate_close(&e.go);
}

/* At a normal exit of the first process (exit() from a raw fork, like a
 * program's main), daemons are terminated and non-daemons joined. */
static void exit_of_main_joins_and_terminates(void **state)
{
    (void)state;
    check_exit_joins(true, true, false);
}

/* A child whose target returns does the same for its own children. */
static void child_return_joins_and_terminates(void **state)
{
    (void)state;
    check_exit_joins(false, false, false);
}

/* ...and so does a child that calls exit(), keeping its exit status. */
static void child_exit_joins_and_terminates(void **state)
{
    (void)state;
    check_exit_joins(false, true, false);
}

/* Children whose handles were freed while running are still joined and
 * terminated at exit. */
static void exit_handles_freed_children(void **state)
{
    (void)state;
    check_exit_joins(false, false, true);
}

static int ignore_term_and_pause(void *arg)
{
    int *ready = arg;
    signal(SIGTERM, SIG_IGN);
    int32_t pid = getpid();
    if (write(ready[1], &pid, sizeof pid) != sizeof pid)
        return 1;
    return pause_forever(NULL);
}

static int exit_with_stubborn_daemon(void *arg)
{
    mp_process *d;
    if (mp_process_new(&d, ignore_term_and_pause, arg, &(mp_process_opts){ .daemon = true }) < 0 ||
        mp_process_start(d) < 0)
        return 50;
    int *ready = arg;
    int32_t pid;
    if (read(ready[0], &pid, sizeof pid) != sizeof pid) /* it ignores SIGTERM now */
        return 51;
    if (write(ready[1], &pid, sizeof pid) != sizeof pid) /* pass it on to the test */
        return 52;
    exit(0);
}

/* A daemon that ignores SIGTERM gets SIGKILL 1 s later at its parent's
 * exit: the exit is delayed by the grace period, not forever. */
static void exit_kills_daemon_ignoring_sigterm(void **state)
{
    (void)state;
    int ready[2];
    mp_test_pipe(ready);
    int64_t t0 = mp_test_now_ms();
    pid_t h = mp_test_fork(exit_with_stubborn_daemon, ready);
    int64_t t1 = mp_test_now_ms();
    int st = mp_test_waitpid(h, 10000);
    int64_t took = mp_test_now_ms() - t1;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    int32_t pid;
    assert_int_equal(read(ready[0], &pid, sizeof pid), (ssize_t)sizeof pid);
    assert_true(took >= 1000 - (t1 - t0)); /* the grace period ran */
    assert_true(took < 8000);
    /* the helper reaped it before exiting: it is gone */
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    close(ready[0]);
    close(ready[1]);
}

/* The middle process: starts a daemonic child, reports its pid, then waits
 * to be SIGKILLed. */
static int daemon_starter(void *arg)
{
    exit_arg *e = arg;
    mp_process *d;
    if (mp_process_new(&d, report_pid_and_pause, e, &(mp_process_opts){ .daemon = true }) < 0 ||
        mp_process_start(d) < 0)
        return 1;
    return pause_forever(NULL);
}

/* A daemonic grandchild dies when its parent is SIGKILLed (no exit routine
 * runs then: PR_SET_PDEATHSIG does it). */
static void daemon_grandchild_dies_with_killed_parent(void **state)
{
    (void)state;
    require_pidfd();
    exit_arg e = { 0 };
    mp_test_pipe(e.report);
    mp_test_pipe(e.ready);
    gate_open(&e.go);
    mp_process *mid = start_new(daemon_starter, &e, NULL);
    record r = read_record(e.report[0]);
    assert_int_equal(r.tag, 'D');
    pid_t g = r.pid;
    int gfd = pidfd_of(g);
    assert_true(gfd >= 0);
    assert_false(readable_within(gfd, 0));
    MP_ASSERT_OK(mp_process_kill(mid));
    assert_int_equal(join_code(mid), -SIGKILL);
    assert_true(readable_within(gfd, 10000));
    close(gfd);
    mp_process_free(mid);
    close(e.report[0]);
    close(e.report[1]);
    close(e.ready[0]);
    close(e.ready[1]);
    gate_close(&e.go);
}

/* A daemon's name and flag work like any process's; a daemon started and
 * joined normally reports its status. */
static void daemon_joins_normally(void **state)
{
    (void)state;
    mp_process *p = start_new(ret_arg, (void *)3, &(mp_process_opts){ .daemon = true });
    assert_int_equal(join_code(p), 3);
    mp_process_free(p);
}

/* Crash safety: a parent looping over starts and joins of daemons is
 * SIGKILLed at random points; no daemon ever outlives it.  The test process
 * is a subreaper, so the orphans come to it and it can count them. */
static int start_daemons_forever(void *arg)
{
    int *ready = arg;
    mp_process *p;
    for (int i = 0;; i++) {
        if (mp_process_new(&p, pause_forever, NULL, &(mp_process_opts){ .daemon = true }) < 0 ||
            mp_process_start(p) < 0)
            return 1;
        if (i == 0)
            mp_test_signal(ready);
        if (i % 3 == 0) {
            mp_process_free(p); /* left running: tracked */
            continue;
        }
        mp_process_kill(p);
        mp_process_join(p, MP_FOREVER);
        mp_process_free(p);
    }
}

static void daemons_never_outlive_killed_parent(void **state)
{
    (void)state;
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    srand((unsigned)getpid());
    for (int round = 0; round < 20; round++) {
        int ready[2];
        mp_test_pipe(ready);
        pid_t h = mp_test_fork(start_daemons_forever, ready);
        mp_test_await(ready, 10000);
        /* let it run for a random 0..4 ms */
        struct timespec ts = { 0, (rand() % 4000) * 1000L };
        nanosleep(&ts, NULL);
        kill(h, SIGKILL);
        /* reap everything: the helper, and every orphan re-parented here */
        int64_t end = mp_test_now_ms() + 10000;
        for (;;) {
            int st;
            pid_t r = waitpid(-1, &st, WNOHANG);
            if (r < 0 && errno == ECHILD)
                break;
            if (r == 0) {
                if (mp_test_now_ms() > end)
                    fail_msg("a daemon outlived its SIGKILLed parent");
                poll(NULL, 0, 1);
            }
        }
        close(ready[0]);
        close(ready[1]);
    }
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
}

/* ---- detached start ----------------------------------------------------------------------- */

typedef struct detached_arg {
    gate go;
    int report[2];
} detached_arg;

static int detached_target(void *arg)
{
    detached_arg *d = arg;
    int32_t info[3] = { getpid(), getppid(), getsid(0) == getpid() };
    if (write(d->report[1], info, sizeof info) != sizeof info)
        return 1;
    close(d->report[1]);
    return wait_gate(&d->go);
}

/* A detached process runs, is not our child (never our zombie), is not a
 * session leader, and we keep no child behind. */
static void detached_start_leaves_no_zombie(void **state)
{
    (void)state;
    require_pidfd();
    int fds0 = mp_test_fd_count();
    detached_arg d;
    gate_open(&d.go);
    mp_test_pipe(d.report);
    pid_t pid = 0;
    MP_ASSERT_OK(mp_process_spawn_detached(&pid, detached_target, &d,
                                           &(mp_process_opts){ .name = "bg" }));
    assert_true(pid > 0);
    int32_t info[3];
    assert_true(readable_within(d.report[0], 10000));
    assert_int_equal(read(d.report[0], info, sizeof info), (ssize_t)sizeof info);
    assert_int_equal(info[0], pid);
    assert_int_not_equal(info[1], getpid());
    assert_int_equal(info[2], 0); /* not a session leader: no controlling tty */
    assert_true(no_children());
    int fd = pidfd_of(pid);
    assert_true(fd >= 0);
    gate_send(&d.go, 0);
    assert_true(readable_within(fd, 10000));
    close(fd);
    assert_true(no_children());
    close(d.report[0]);
    close(d.report[1]);
    gate_close(&d.go);
    assert_int_equal(mp_test_fd_count(), fds0);

    /* a setup failure of the grandchild is reported, nothing remains */
    mp__process_test_fail_setup = EPERM;
    MP_ASSERT_ERR(mp_process_spawn_detached(&pid, ret_arg, NULL, NULL), -EPERM);
    mp__process_test_fail_setup = 0;
    assert_true(no_children());
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void *start_join_thread(void *arg)
{
    intptr_t base = (intptr_t)arg;
    for (intptr_t i = 0; i < 25; i++) {
        mp_process *p;
        int want = (int)((base + i) & 0x7f), code = -1;
        if (mp_process_new(&p, ret_arg, (void *)(intptr_t)want, NULL) < 0 ||
            mp_process_start(p) < 0 || mp_process_join(p, 10000) < 0 ||
            mp_process_exitcode(p, &code) < 0 || code != want)
            return (void *)1;
        mp_process_free(p);
    }
    return NULL;
}

static void *join_thread(void *arg)
{
    return (void *)(intptr_t)mp_process_join(arg, 10000);
}

/* Threads starting and joining at once; two threads joining one handle. */
static void threads_start_and_join(void **state)
{
    (void)state;
    int fds0 = mp_test_fd_count();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, start_join_thread, (void *)(intptr_t)(i * 25)), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_null(r);
    }
    gate g;
    gate_open(&g);
    mp_process *p = start_new(wait_gate, &g, NULL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, join_thread, p), 0);
    gate_send(&g, 11);
    for (int i = 0; i < 2; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_int_equal((intptr_t)r, 0);
    }
    assert_int_equal(join_code(p), 11);
    mp_process_free(p);
    gate_close(&g);
    assert_true(no_children());
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* ---- the fallback without pidfds ------------------------------------------------------------ */

static int exec_sleep(void *arg)
{
    (void)arg;
    execl("/bin/sleep", "sleep", "20", (char *)NULL);
    return 127;
}

/* Everything above also holds on kernels without pidfds (the sentinel pipe). */
static void fallback_without_pidfd(void **state)
{
    (void)state;
    mp__process_test_no_pidfd = 1;
    int fds0 = mp_test_fd_count();
    mp_process *p = start_new(ret_arg, (void *)7, NULL);
    assert_int_equal(join_code(p), 7);
    MP_ASSERT_ERR(mp_process_kill(p), -ESRCH);
    mp_process_free(p);
    p = start_new(call_exit, (void *)8, NULL);
    assert_int_equal(join_code(p), 8);
    mp_process_free(p);

    gate g;
    gate_open(&g);
    p = start_new(wait_gate, &g, NULL);
    int fd = mp_process_sentinel(p);
    MP_ASSERT_OK(fd);
    assert_false(readable_within(fd, 20));
    MP_ASSERT_ERR(mp_process_join(p, 0), -EAGAIN);
    MP_ASSERT_ERR(mp_process_join(p, 100), -ETIMEDOUT);
    assert_true(mp_process_is_alive(p));
    gate_send(&g, 1);
    assert_true(readable_within(fd, 10000));
    assert_int_equal(join_code(p), 1);
    mp_process_free(p);
    gate_close(&g);

    for (int i = 0; i < 20; i++) {
        p = start_new(pause_forever, NULL, NULL);
        MP_ASSERT_OK(mp_process_terminate(p));
        assert_int_equal(join_code(p), -SIGTERM);
        mp_process_free(p);
    }
    /* a grandchild does not hold its parent's sentinel open */
    p = start_new(nested_parent, NULL, NULL);
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);

    /* exec closes the sentinel's write end (close-on-exec) while the child
     * runs on: join then waits for it without spinning, by the clock */
    if (access("/bin/sleep", X_OK) == 0) {
        p = start_new(exec_sleep, NULL, &(mp_process_opts){ .daemon = true });
        int64_t t0 = mp_test_now_ms();
        MP_ASSERT_ERR(mp_process_join(p, 200), -ETIMEDOUT);
        assert_true(mp_test_now_ms() - t0 >= 200);
        assert_true(mp_process_is_alive(p));
        MP_ASSERT_OK(mp_process_kill(p));
        assert_int_equal(join_code(p), -SIGKILL);
        mp_process_free(p);
    }

    mp__process_test_fail_setup = EACCES;
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, NULL, NULL));
    MP_ASSERT_ERR(mp_process_start(p), -EACCES);
    mp__process_test_fail_setup = 0;
    mp__process_test_die_in_setup = 1;
    MP_ASSERT_ERR(mp_process_start(p), -ECHILD);
    mp__process_test_die_in_setup = 0;
    mp_process_free(p);
    mp__process_test_no_pidfd = 0;
    assert_true(no_children());
    assert_int_equal(mp_test_fd_count(), fds0);
}


/* With SIGCHLD ignored the kernel reaps children itself: join still
 * returns once the child has exited, and exitcode says the status is lost
 * (-ECHILD) rather than inventing one. */
static void sigchld_ignored_status_lost(void **state)
{
    (void)state;
    struct sigaction ign = { .sa_handler = SIG_IGN }, old;
    assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
    gate g;
    gate_open(&g);
    mp_process *p = start_new(wait_gate, &g, NULL);
    assert_true(mp_process_is_alive(p));
    MP_ASSERT_ERR(mp_process_join(p, 0), -EAGAIN);
    gate_send(&g, 1);
    MP_ASSERT_OK(mp_process_join(p, 10000));
    int code = 77;
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), -ECHILD);
    assert_int_equal(code, 77);
    MP_ASSERT_ERR(mp_process_kill(p), -ESRCH);
    mp_process_free(p);
    gate_close(&g);
    /* a failed start, its child reaped by the kernel: still an error, no hang */
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, NULL, NULL));
    mp__process_test_fail_setup = EPERM;
    MP_ASSERT_ERR(mp_process_start(p), -EPERM);
    mp__process_test_fail_setup = 0;
    mp__process_test_die_in_setup = 1;
    int rc = mp_process_start(p);
    mp__process_test_die_in_setup = 0;
    MP_ASSERT_ERR(rc, -ECHILD);
    mp_process_free(p);
    /* trivial children may be gone (reaped by the kernel) even before
     * start has opened their pidfd: start still succeeds */
    int fds0 = mp_test_fd_count();
    for (int i = 0; i < 50; i++) {
        p = start_new(ret_arg, NULL, NULL);
        MP_ASSERT_OK(mp_process_join(p, 10000));
        MP_ASSERT_ERR(mp_process_exitcode(p, &code), -ECHILD);
        int fd = mp_process_sentinel(p);
        MP_ASSERT_OK(fd);
        assert_true(readable_within(fd, 0));
        mp_process_free(p);
    }
    /* the same, forced: the child is gone before start opens its pidfd */
    int probe = pidfd_of(getpid());
    if (probe < 0) { /* no pidfds here: that path does not exist */
        assert_int_equal(sigaction(SIGCHLD, &old, NULL), 0);
        return;
    }
    close(probe);
    mp__process_test_late_pidfd = 1;
    p = start_new(ret_arg, NULL, NULL);
    MP_ASSERT_OK(mp_process_join(p, 0));
    MP_ASSERT_ERR(mp_process_exitcode(p, &code), -ECHILD);
    MP_ASSERT_ERR(mp_process_terminate(p), -ESRCH);
    assert_true(readable_within(mp_process_sentinel(p), 0));
    mp_process_free(p);
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, NULL, NULL));
    mp__process_test_fail_setup = EACCES;
    MP_ASSERT_ERR(mp_process_start(p), -EACCES);
    mp__process_test_fail_setup = 0;
    mp__process_test_late_pidfd = 0;
    mp_process_free(p);
    assert_int_equal(mp_test_fd_count(), fds0);
    assert_int_equal(sigaction(SIGCHLD, &old, NULL), 0);
}

/* Out of fds: start fails with -EMFILE and leaves no child behind. */
static void start_without_fds_is_emfile(void **state)
{
    (void)state;
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* the lowest free fd is at most the count: allow one more only */
    lim.rlim_cur = (rlim_t)mp_test_fd_count() + 1;
    lim.rlim_max = old.rlim_max;
    int dummy[64], nd = 0;
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, NULL, NULL));
    MP_ASSERT_OK(mp_process_start(p)); /* warm up before the limit */
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);
    MP_ASSERT_OK(mp_process_new(&p, ret_arg, NULL, NULL));
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    /* fill every hole below the limit, so exactly zero or one fd is free */
    int fd;
    while (nd < 64 && (fd = dup(0)) >= 0)
        dummy[nd++] = fd;
    MP_ASSERT_ERR(mp_process_start(p), -EMFILE);
    while (nd > 0)
        close(dummy[--nd]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(no_children());
    assert_int_equal(mp_process_pid(p), 0);
    MP_ASSERT_OK(mp_process_start(p));
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);
}

static mp_process *parents_handle;

static int start_parents_handle(void *arg)
{
    (void)arg;
    return mp_process_start(parents_handle) == -EINVAL ? 0 : 1;
}

/* A handle may only be started by the process that created it (Python's
 * rule), even in a raw fork that inherited it. */
static void start_in_other_process_is_einval(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_process_new(&parents_handle, ret_arg, NULL, NULL));
    pid_t pid = mp_test_fork(start_parents_handle, NULL);
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    mp_process_free(parents_handle);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(names_default_and_custom),
    cmocka_unit_test(current_name_in_child),
    cmocka_unit_test(nested_processes),
    cmocka_unit_test(bad_input),
    cmocka_unit_test(exitcode_from_return),
    cmocka_unit_test(exitcode_from_exit),
    cmocka_unit_test(exitcode_from_signal),
    cmocka_unit_test(join_timeout_child_alive),
    cmocka_unit_test(is_alive_reaps),
    cmocka_unit_test(sentinel_polls_readable_at_exit),
    cmocka_unit_test(terminate_100_right_after_start),
    cmocka_unit_test(signal_after_reap_is_esrch),
    cmocka_unit_test(start_reports_child_setup_error),
    cmocka_unit_test(start_handshake_sleeping_wait),
    cmocka_unit_test(start_handshake_without_slot),
    cmocka_unit_test(plain_fork_child_has_own_handshake),
    cmocka_unit_test(never_reaps_other_children),
    cmocka_unit_test(no_duplicated_output),
    cmocka_unit_test(atexit_handlers_not_run_in_child),
    cmocka_unit_test(no_fd_leak),
    cmocka_unit_test(child_cannot_touch_siblings),
    cmocka_unit_test(child_inherits_no_sibling_fds),
    cmocka_unit_test(join_runs_handlers_and_eintr),
    cmocka_unit_test(join_spin_keeps_deadline_and_handlers),
    cmocka_unit_test(exit_of_main_joins_and_terminates),
    cmocka_unit_test(child_return_joins_and_terminates),
    cmocka_unit_test(child_exit_joins_and_terminates),
    cmocka_unit_test(exit_handles_freed_children),
    cmocka_unit_test(exit_kills_daemon_ignoring_sigterm),
    cmocka_unit_test(daemon_grandchild_dies_with_killed_parent),
    cmocka_unit_test(daemon_joins_normally),
    cmocka_unit_test(daemons_never_outlive_killed_parent),
    cmocka_unit_test(detached_start_leaves_no_zombie),
    cmocka_unit_test(threads_start_and_join),
    cmocka_unit_test(fallback_without_pidfd),
    cmocka_unit_test(sigchld_ignored_status_lost),
    cmocka_unit_test(start_without_fds_is_emfile),
    cmocka_unit_test(start_in_other_process_is_einval),
};

MP_TEST_MAIN(tests)
