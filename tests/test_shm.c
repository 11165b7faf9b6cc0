/* Description: shared memory - anonymous blocks inherited by children
 * (mp_shm_alloc, MP_SHM_NEW, MP_SHM_ARRAY) and named segments
 * (mp_shm_open/unlink): zeroing, alignment, sharing, atomics, names, bad
 * input, and what a crash leaves. */
/* MP_TEST_TIMEOUT 30 */
#include "mp_test.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>

static void expect_exit0(pid_t pid)
{
    int st = mp_test_waitpid(pid, 20000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %d: status 0x%x", (int)pid, st);
}

/* A name no other test run uses. */
static const char *uniq(const char *tag)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "/mp_test_%s_%d", tag, (int)getpid());
    return buf;
}

/* ---- anonymous blocks --------------------------------------------------------- */

static void alloc_zeroed_aligned(void **state)
{
    (void)state;
    int *arr = MP_SHM_ARRAY(int, 6);
    assert_non_null(arr);
    assert_int_equal((uintptr_t)arr % 64, 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(arr[i], 0);
    struct big {
        char b[100000];
    } *big = MP_SHM_NEW(struct big);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 64, 0);
    for (size_t i = 0; i < sizeof big->b; i++)
        assert_int_equal(big->b[i], 0);
    mp_shm_free(big);
    mp_shm_free(arr);
    mp_shm_free(NULL);
}

static void alloc_bad_sizes(void **state)
{
    (void)state;
    errno = 0;
    assert_null(mp_shm_alloc(0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(mp_shm_alloc(SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(mp_shm_alloc((size_t)1 << 62)); /* more than any machine has */
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(MP_SHM_ARRAY(int, SIZE_MAX / 2)); /* the product overflows */
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(mp_shm_calloc(0, 4));
    assert_int_equal(errno, EINVAL);
}

/* A pointer that is not a block is ignored, not a crash. */
static void free_ignores_foreign(void **state)
{
    (void)state;
    void *m = malloc(100);
    mp_shm_free(m);
    free(m);
    char *p = mp_shm_alloc(256);
    assert_non_null(p);
    mp_shm_free(p + 64); /* an interior pointer: not a block start */
    p[0] = 1;            /* still mapped */
    mp_shm_free(p);
}

/* Seed example 2: the child sets element 2 to 1000, the parent sees it. */
static int set_elem2(void *arg)
{
    int *arr = arg;
    arr[2] = 1000;
    mp_shm_free(arr); /* the child's copy only */
    return 0;
}

static void alloc_shared_with_child(void **state)
{
    (void)state;
    int *arr = MP_SHM_ARRAY(int, 6);
    assert_non_null(arr);
    pid_t pid = mp_test_fork(set_elem2, arr);
    expect_exit0(pid);
    assert_int_equal(arr[2], 1000);
    arr[3] = 7; /* the parent's mapping survived the child's free */
    mp_shm_free(arr);
}

/* C11 atomics and the __atomic builtins work across processes on it. */
struct atomics {
    atomic_long c11;
    long builtin;
};

static int add_many(void *arg)
{
    struct atomics *a = arg;
    for (int i = 0; i < 100000; i++) {
        atomic_fetch_add_explicit(&a->c11, 1, memory_order_relaxed);
        __atomic_fetch_add(&a->builtin, 2, __ATOMIC_RELAXED);
    }
    return 0;
}

static void atomics_across_processes(void **state)
{
    (void)state;
    struct atomics *a = MP_SHM_NEW(struct atomics);
    assert_non_null(a);
    pid_t p1 = mp_test_fork(add_many, a), p2 = mp_test_fork(add_many, a);
    add_many(a);
    expect_exit0(p1);
    expect_exit0(p2);
    assert_int_equal(atomic_load(&a->c11), 300000);
    assert_int_equal(a->builtin, 600000);
    mp_shm_free(a);
}

/* ---- named segments ------------------------------------------------------------- */

static void named_create_attach(void **state)
{
    (void)state;
    const char *name = uniq("ca");
    mp_shm_unlink(name);
    int fds = mp_test_fd_count();
    mp_shm *a = NULL, *b = NULL, *c = NULL;
    MP_ASSERT_ERR(mp_shm_open(&a, name, 4096, 0), -ENOENT);
    assert_null(a);
    MP_ASSERT_OK(mp_shm_open(&a, name, 10000, MP_CREATE | MP_EXCL));
    assert_int_equal(mp_shm_size(a), 10000);
    unsigned char *da = mp_shm_data(a);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(da[i], 0);
    memcpy(da, "hello", 6);
    MP_ASSERT_ERR(mp_shm_open(&b, name, 10000, MP_CREATE | MP_EXCL), -EEXIST);
    assert_null(b);
    /* attach: size 0 takes the existing size; MP_CREATE alone attaches too */
    MP_ASSERT_OK(mp_shm_open(&b, name, 0, 0));
    assert_int_equal(mp_shm_size(b), 10000);
    assert_string_equal(mp_shm_data(b), "hello");
    MP_ASSERT_OK(mp_shm_open(&c, name, 100, MP_CREATE));
    assert_int_equal(mp_shm_size(c), 100);
    ((char *)mp_shm_data(c))[0] = 'j';
    assert_string_equal(mp_shm_data(a), "jello");
    MP_ASSERT_OK(mp_shm_close(c));
    MP_ASSERT_OK(mp_shm_close(b));
    MP_ASSERT_OK(mp_shm_close(a));
    assert_int_equal(mp_test_fd_count(), fds);
    MP_ASSERT_OK(mp_shm_unlink(name));
    MP_ASSERT_ERR(mp_shm_unlink(name), -ENOENT);
    MP_ASSERT_ERR(mp_shm_open(&a, name, 0, 0), -ENOENT);
}

static void named_bad_input(void **state)
{
    (void)state;
    int fds = mp_test_fd_count();
    mp_shm *s = NULL;
    char longname[300];
    longname[0] = '/';
    memset(longname + 1, 'x', 260);
    longname[261] = '\0';
    const char *bad[] = { NULL, "", "/", "noslash", "/a/b", "/.", "/.." };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        MP_ASSERT_ERR(mp_shm_open(&s, bad[i], 64, MP_CREATE), -EINVAL);
        MP_ASSERT_ERR(mp_shm_unlink(bad[i]), -EINVAL);
    }
    MP_ASSERT_ERR(mp_shm_open(&s, longname, 64, MP_CREATE), -ENAMETOOLONG);
    MP_ASSERT_ERR(mp_shm_unlink(longname), -ENAMETOOLONG);
    const char *name = uniq("bad");
    mp_shm_unlink(name);
    MP_ASSERT_ERR(mp_shm_open(NULL, name, 64, MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_shm_open(&s, name, 64, MP_EXCL), -EINVAL);
    MP_ASSERT_ERR(mp_shm_open(&s, name, 64, 0x100 | MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_shm_open(&s, name, 0, MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_shm_open(&s, name, SIZE_MAX, MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_shm_open(&s, name, 64, 0), -ENOENT); /* nothing was created */
    MP_ASSERT_OK(mp_shm_open(&s, name, 64, MP_CREATE | MP_EXCL));
    mp_shm *t = NULL;
    MP_ASSERT_ERR(mp_shm_open(&t, name, 65, 0), -EINVAL); /* larger than it is */
    MP_ASSERT_OK(mp_shm_close(s));
    MP_ASSERT_OK(mp_shm_unlink(name));
    MP_ASSERT_ERR(mp_shm_close(NULL), -EINVAL);
    assert_int_equal(mp_test_fd_count(), fds); /* no failure path leaks one */
    assert_null(mp_shm_data(NULL));
    assert_int_equal(mp_shm_size(NULL), 0);
}

/* An unrelated program (a shell) sees the bytes by name, and the segment
 * outlives a creator killed without unlinking it. */
struct creator_arg {
    const char *name;
    int ready[2];
};

static int creator(void *arg)
{
    struct creator_arg *c = arg;
    mp_shm *s;
    if (mp_shm_open(&s, c->name, 4096, MP_CREATE | MP_EXCL) != 0)
        return 1;
    strcpy(mp_shm_data(s), "left behind");
    mp_test_signal(c->ready);
    for (;;)
        pause();
}

static void named_survives_crash_and_unrelated_reader(void **state)
{
    (void)state;
    struct creator_arg c = { .name = uniq("crash") };
    mp_shm_unlink(c.name);
    mp_test_pipe(c.ready);
    pid_t pid = mp_test_fork(creator, &c);
    mp_test_await(c.ready, 10000);
    kill(pid, SIGKILL);
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFSIGNALED(st));
    /* another program, by name only */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "head -c 11 /dev/shm%s", c.name);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char buf[32] = { 0 };
    assert_int_equal(fread(buf, 1, 11, f), 11);
    assert_int_equal(pclose(f), 0);
    assert_string_equal(buf, "left behind");
    /* attach to the leftover, MP_CREATE alone reuses it */
    mp_shm *s;
    MP_ASSERT_ERR(mp_shm_open(&s, c.name, 4096, MP_CREATE | MP_EXCL), -EEXIST);
    MP_ASSERT_OK(mp_shm_open(&s, c.name, 4096, MP_CREATE));
    assert_string_equal(mp_shm_data(s), "left behind");
    /* unlink while mapped: the mapping stays, the name goes */
    MP_ASSERT_OK(mp_shm_unlink(c.name));
    strcpy(mp_shm_data(s), "still here");
    assert_string_equal(mp_shm_data(s), "still here");
    mp_shm *t;
    MP_ASSERT_ERR(mp_shm_open(&t, c.name, 0, 0), -ENOENT);
    MP_ASSERT_OK(mp_shm_close(s));
    close(c.ready[0]);
    close(c.ready[1]);
}

/* A lock placed in a named segment works between processes that opened it
 * separately (so at different addresses). */
static int named_locker(void *arg)
{
    const char *name = arg;
    mp_shm *s;
    if (mp_shm_open(&s, name, 0, 0) != 0)
        return 1;
    struct {
        mp_lock l;
        long n;
    } *v = mp_shm_data(s);
    for (int i = 0; i < 20000; i++) {
        if (mp_lock_acquire(&v->l, MP_FOREVER) != 0)
            return 2;
        v->n++;
        mp_lock_release(&v->l);
    }
    mp_shm_close(s);
    return 0;
}

static void named_lock_between_processes(void **state)
{
    (void)state;
    const char *name = uniq("lock");
    mp_shm_unlink(name);
    mp_shm *s;
    MP_ASSERT_OK(mp_shm_open(&s, name, 4096, MP_CREATE | MP_EXCL));
    struct {
        mp_lock l;
        long n;
    } *v = mp_shm_data(s);
    MP_ASSERT_OK(mp_lock_init(&v->l));
    pid_t p1 = mp_test_fork(named_locker, (void *)name);
    pid_t p2 = mp_test_fork(named_locker, (void *)name);
    expect_exit0(p1);
    expect_exit0(p2);
    assert_int_equal(v->n, 40000);
    MP_ASSERT_OK(mp_shm_close(s));
    MP_ASSERT_OK(mp_shm_unlink(name));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(alloc_zeroed_aligned),
    cmocka_unit_test(alloc_bad_sizes),
    cmocka_unit_test(free_ignores_foreign),
    cmocka_unit_test(alloc_shared_with_child),
    cmocka_unit_test(atomics_across_processes),
    cmocka_unit_test(named_create_attach),
    cmocka_unit_test(named_bad_input),
    cmocka_unit_test(named_survives_crash_and_unrelated_reader),
    cmocka_unit_test(named_lock_between_processes),
};

MP_TEST_MAIN(tests)
