/* Description: the foundation - error table, version, deadlines, the futex
 * wait primitive and the fork protocol. */
/* MP_TEST_TIMEOUT 20 */
#include "mp_test.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "internal/core.h"

/* Every code in the table has a distinct, non-empty name and message. */
static void error_table_complete(void **state)
{
    (void)state;
    static const int codes[] = {
#define X(name, value, msg) value,
        MP_OWN_ERROR_MAP(X)
#undef X
#define X(name, value, msg) -(value),
        MP_ERRNO_MAP(X)
#undef X
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *m = mp_strerror(codes[i]);
        assert_non_null(m);
        assert_true(strlen(m) > 0);
        assert_string_not_equal(m, "unknown error");
        assert_string_not_equal(mp_err_name(codes[i]), "unknown");
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
    assert_string_equal(mp_err_name(MP_EOF), "MP_EOF");
    assert_string_equal(mp_err_name(-EAGAIN), "EAGAIN");
    assert_string_equal(mp_err_name(-ETIMEDOUT), "ETIMEDOUT");
}

/* The library codes are below -4095 so no -errno can collide with them. */
static void own_codes_below_errno_range(void **state)
{
    (void)state;
    assert_true(MP_EOF < -4095);
    assert_true(MP_ETASK < -4095);
    assert_true(MP_EWORKER < -4095);
}

/* Unknown codes still get a message, never NULL. */
static void strerror_unknown_codes(void **state)
{
    (void)state;
    int odd[] = { 1, 12345, -4095, -4099, -100000, INT32_MIN, INT32_MAX, -1000 };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        assert_non_null(mp_strerror(odd[i]));
        assert_non_null(mp_err_name(odd[i]));
    }
    assert_string_equal(mp_strerror(-4099), "unknown error");
    /* an errno that is not in the table still gets the system's text */
    assert_string_not_equal(mp_strerror(-EXDEV), "unknown error");
    srand(7);
    for (int i = 0; i < 10000; i++) {
        int v = -(rand() % 100000);
        assert_non_null(mp_strerror(v));
    }
}

static void version_matches_header(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR,
             MP_VERSION_PATCH);
    assert_string_equal(mp_version(), want);
    assert_int_equal(mp_version_hex(), MP_VERSION_HEX);
}

/* timeout 0 -> -EAGAIN at once; a positive timeout -> -ETIMEDOUT, not early. */
static void futex_wait_timeouts(void **state)
{
    (void)state;
    uint32_t word = 0;
    mp__deadline dl = mp__deadline_from_ms(0);
    assert_int_equal(mp__wait_word(&word, 0, &dl), -EAGAIN);

    int64_t t0 = mp_test_now_ms();
    dl = mp__deadline_from_ms(50);
    assert_int_equal(mp__wait_word(&word, 0, &dl), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 50);
    assert_true(took < 5000);

    /* a word that already differs returns 0 at once */
    dl = mp__deadline_from_ms(MP_FOREVER);
    assert_int_equal(mp__wait_word(&word, 1, &dl), 0);
}

/* A wake from another process ends a wait on a shared word. */
static int waker(void *arg)
{
    uint32_t *w = arg;
    __atomic_store_n(w, 1, __ATOMIC_RELEASE);
    mp__futex_wake(w, 1);
    return 0;
}

static void futex_wakes_across_processes(void **state)
{
    (void)state;
    uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(w != MAP_FAILED);
    pid_t pid = mp_test_fork(waker, w);
    mp__deadline dl = mp__deadline_from_ms(10000);
    while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == 0)
        assert_int_equal(mp__wait_word(w, 0, &dl), 0);
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    munmap(w, 4096);
}

/* mp__fork flushes stdio first: buffered output is written once, not twice. */
static void fork_flushes_stdio(void **state)
{
    (void)state;
    char path[] = "/tmp/mp_core_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    assert_non_null(f);
    setvbuf(f, NULL, _IOFBF, 4096);
    fputs("once\n", f);
    pid_t pid = mp__fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0); /* a child exiting with _exit must not write "once" again */
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    fflush(f);
    char buf[64] = { 0 };
    assert_int_equal(pread(fd, buf, sizeof buf - 1, 0), 5);
    assert_string_equal(buf, "once\n");
    fclose(f);
    unlink(path);
}

static int hook_child_ran;
static int hook_parent_ran;
static int hook_prepare_ran;
static void h_prepare(void) { hook_prepare_ran++; }
static void h_parent(void) { hook_parent_ran++; }
static void h_child(void) { hook_child_ran++; }
static const mp__fork_hooks test_hooks = { h_prepare, h_parent, h_child };

static void fork_runs_hooks(void **state)
{
    (void)state;
    mp__fork_register(&test_hooks);
    mp__fork_register(&test_hooks); /* idempotent */
    pid_t pid = mp__fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(hook_child_ran == 1 && hook_parent_ran == 0 ? 0 : 1);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(hook_prepare_ran, 1);
    assert_int_equal(hook_parent_ran, 1);
    assert_int_equal(hook_child_ran, 0);
}

static void deadline_poll_ms_rounds_up(void **state)
{
    (void)state;
    mp__deadline f = mp__deadline_from_ms(MP_FOREVER);
    assert_int_equal(mp__deadline_poll_ms(&f), -1);
    assert_false(mp__deadline_expired(&f));
    mp__deadline z = mp__deadline_from_ms(0);
    assert_int_equal(mp__deadline_poll_ms(&z), 0);
    assert_true(mp__deadline_expired(&z));
    assert_int_equal(mp__deadline_code(&z), -EAGAIN);
    mp__deadline d = mp__deadline_from_ms(1000);
    int ms = mp__deadline_poll_ms(&d);
    assert_true(ms > 900 && ms <= 1000);
    assert_int_equal(mp__deadline_code(&d), -ETIMEDOUT);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(error_table_complete),
    cmocka_unit_test(own_codes_below_errno_range),
    cmocka_unit_test(strerror_unknown_codes),
    cmocka_unit_test(version_matches_header),
    cmocka_unit_test(futex_wait_timeouts),
    cmocka_unit_test(futex_wakes_across_processes),
    cmocka_unit_test(fork_flushes_stdio),
    cmocka_unit_test(fork_runs_hooks),
    cmocka_unit_test(deadline_poll_ms_rounds_up),
};

MP_TEST_MAIN(tests)
