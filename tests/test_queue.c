/* Description: the shared-memory queue - FIFO, sizes, timeouts, close,
 * JoinableQueue, named queues, multi-producer/multi-consumer ordering and the
 * ring checker. */
/* MP_TEST_TIMEOUT 30 */
#include "mp_test.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "internal/ring.h"

/* Out-of-memory injection for the tests below: while nomem is set, malloc
 * fails.  Not under AddressSanitizer, which owns malloc there. */
#if defined(__SANITIZE_ADDRESS__)
#define MP_TEST_NOMEM 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MP_TEST_NOMEM 0
#endif
#endif
#ifndef MP_TEST_NOMEM
#define MP_TEST_NOMEM 1
static volatile int nomem;
extern void *__libc_malloc(size_t size);
void *malloc(size_t size)
{
    if (nomem) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(size);
}
#endif

static void exited_ok(pid_t pid)
{
    int st = mp_test_waitpid(pid, 20000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %d: status 0x%x", (int)pid, st);
}

/* ---- single process ------------------------------------------------------- */

static void bad_arguments(void **state)
{
    (void)state;
    mp_queue *q = NULL;
    MP_ASSERT_ERR(mp_queue_new(NULL, NULL), -EINVAL);
    MP_ASSERT_ERR(mp_queue_new(&q, &(mp_queue_opts){ .capacity = MP_QUEUE_MAX_CAPACITY + 1 }),
                  -EINVAL);
    MP_ASSERT_ERR(mp_queue_new(&q, &(mp_queue_opts){ .maxsize = MP_QUEUE_MAX_MAXSIZE + 1 }),
                  -EINVAL);
    MP_ASSERT_ERR(mp_queue_new(&q, &(mp_queue_opts){ .capacity = SIZE_MAX }), -EINVAL);
    assert_null(q);
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    char buf[8];
    size_t len;
    void *m;
    MP_ASSERT_ERR(mp_queue_put(NULL, "x", 1, 0), -EINVAL);
    MP_ASSERT_ERR(mp_queue_put(q, NULL, 1, 0), -EINVAL);
    MP_ASSERT_ERR(mp_queue_get(NULL, buf, sizeof buf, &len, 0), -EINVAL);
    MP_ASSERT_ERR(mp_queue_get(q, NULL, 8, &len, 0), -EINVAL);
    MP_ASSERT_ERR(mp_queue_get(q, buf, sizeof buf, NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_queue_get_alloc(q, NULL, &len, 0), -EINVAL);
    MP_ASSERT_ERR(mp_queue_get_alloc(q, &m, NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_queue_close(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_queue_task_done(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_queue_join(NULL, 0), -EINVAL);
    assert_int_equal(mp_queue_qsize(NULL), 0);
    mp_queue_free(NULL);
    mp_queue_free(q);
}

static void fifo_and_sizes(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    assert_true(mp_queue_empty(q));
    assert_false(mp_queue_full(q));
    for (int i = 0; i < 1000; i++)
        MP_ASSERT_OK(mp_queue_put(q, &i, sizeof i, 0));
    assert_int_equal(mp_queue_qsize(q), 1000);
    for (int i = 0; i < 1000; i++) {
        int v = -1;
        size_t len = 0;
        MP_ASSERT_OK(mp_queue_get(q, &v, sizeof v, &len, 0));
        assert_int_equal(len, sizeof v);
        assert_int_equal(v, i);
    }
    assert_true(mp_queue_empty(q));
    mp__ring *r = mp__queue_ring(q);
    MP_ASSERT_OK(mp__ring_check(r, mp__queue_data(q)));
    mp_queue_free(q);
}

static void zero_length_messages(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){ .capacity = 64 }));
    MP_ASSERT_OK(mp_queue_put(q, NULL, 0, 0));
    MP_ASSERT_OK(mp_queue_put(q, "", 0, 0));
    assert_int_equal(mp_queue_qsize(q), 2);
    size_t len = 99;
    MP_ASSERT_OK(mp_queue_get(q, NULL, 0, &len, 0));
    assert_int_equal(len, 0);
    void *m = NULL;
    MP_ASSERT_OK(mp_queue_get_alloc(q, &m, &len, 0));
    assert_non_null(m);
    assert_int_equal(len, 0);
    free(m);
    MP_ASSERT_ERR(mp_queue_get(q, NULL, 0, &len, 0), -EAGAIN);
    mp_queue_free(q);
}

/* A message of exactly capacity bytes fits; one byte more is -EMSGSIZE at
 * once, even with MP_FOREVER, and on a full queue. */
static void capacity_limits(void **state)
{
    (void)state;
    mp_queue *q;
    size_t cap = 1000;
    MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){ .capacity = cap }));
    char *big = malloc(cap + 1), *out = malloc(cap + 1);
    for (size_t i = 0; i <= cap; i++)
        big[i] = (char)(i * 7);
    MP_ASSERT_ERR(mp_queue_put(q, big, cap + 1, MP_FOREVER), -EMSGSIZE);
    MP_ASSERT_OK(mp_queue_put(q, big, cap, 0));
    MP_ASSERT_ERR(mp_queue_put(q, big, cap + 1, MP_FOREVER), -EMSGSIZE);
    size_t len;
    MP_ASSERT_OK(mp_queue_get(q, out, cap, &len, 0));
    assert_int_equal(len, cap);
    assert_memory_equal(out, big, cap);
    /* the ring (1024 bytes here) fills by bytes when maxsize is 0 */
    int n = 0;
    while (mp_queue_put(q, big, 100, 0) == 0)
        n++;
    assert_int_equal(n, 1024 / 112);
    assert_true(mp_queue_full(q) || mp_queue_put(q, big, 0, 0) == 0);
    MP_ASSERT_ERR(mp_queue_put(q, big, 100, 0), -EAGAIN);
    free(big);
    free(out);
    mp_queue_free(q);
}

static void small_buffer_keeps_message(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    MP_ASSERT_OK(mp_queue_put(q, "hello world", 11, 0));
    char buf[16] = { 0 };
    size_t len = 0;
    MP_ASSERT_ERR(mp_queue_get(q, buf, 4, &len, 0), -EMSGSIZE);
    assert_int_equal(len, 11);
    assert_int_equal(mp_queue_qsize(q), 1);
    MP_ASSERT_OK(mp_queue_get(q, buf, len, &len, 0));
    assert_memory_equal(buf, "hello world", 11);
    mp_queue_free(q);
}

static void get_alloc_roundtrip(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){ .capacity = 100000 }));
    char *msg = malloc(100000);
    for (int i = 0; i < 100000; i++)
        msg[i] = (char)(i ^ (i >> 8));
    MP_ASSERT_OK(mp_queue_put(q, msg, 100000, 0));
    void *m = NULL;
    size_t len = 0;
    MP_ASSERT_OK(mp_queue_get_alloc(q, &m, &len, 0));
    assert_int_equal(len, 100000);
    assert_memory_equal(m, msg, 100000);
    free(m);
    m = (void *)1;
    MP_ASSERT_ERR(mp_queue_get_alloc(q, &m, &len, 0), -EAGAIN);
    assert_ptr_equal(m, (void *)1);
    free(msg);
    mp_queue_free(q);
}

/* Variable-size messages through a small ring: many wraps, each message
 * whole and in order. */
static void wrap_around(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){ .capacity = 300 }));
    unsigned char in[300], out[300];
    unsigned seed = 1, rseed = 1;
    for (int round = 0; round < 20000; round++) {
        int burst = 1 + round % 4;
        for (int k = 0; k < burst; k++) {
            size_t n = rand_r(&seed) % 120;
            for (size_t i = 0; i < n; i++)
                in[i] = (unsigned char)(n + i + (unsigned)round);
            MP_ASSERT_OK(mp_queue_put(q, in, n, 0));
        }
        for (int k = 0; k < burst; k++) {
            size_t want = rand_r(&rseed) % 120, len;
            MP_ASSERT_OK(mp_queue_get(q, out, sizeof out, &len, 0));
            assert_int_equal(len, want);
            for (size_t i = 0; i < len; i++)
                assert_int_equal(out[i], (unsigned char)(len + i + (unsigned)round));
        }
    }
    MP_ASSERT_OK(mp__ring_check(mp__queue_ring(q), mp__queue_data(q)));
    mp_queue_free(q);
}

/* The seed's example 9: Queue(3). */
static void maxsize_full_empty(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){ .maxsize = 3 }));
    MP_ASSERT_OK(mp_queue_put(q, "1", 1, 0));
    assert_false(mp_queue_full(q));
    MP_ASSERT_OK(mp_queue_put(q, "2", 1, 0));
    MP_ASSERT_OK(mp_queue_put(q, "3", 1, 0));
    assert_true(mp_queue_full(q));
    MP_ASSERT_ERR(mp_queue_put(q, "4", 1, 0), -EAGAIN);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_queue_put(q, "4", 1, 60), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 60 && took < 5000);
    char c;
    size_t len;
    MP_ASSERT_OK(mp_queue_get(q, &c, 1, &len, 0));
    assert_int_equal(c, '1');
    assert_int_equal(mp_queue_qsize(q), 2);
    assert_false(mp_queue_empty(q));
    assert_false(mp_queue_full(q));
    mp_queue_free(q);
}

static void get_timeouts(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    char c;
    size_t len;
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_queue_get(q, &c, 1, &len, 0), -EAGAIN);
    assert_true(mp_test_now_ms() - t0 < 1000);
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_queue_get(q, &c, 1, &len, 80), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 80 && took < 5000);
    mp_queue_free(q);
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

/* Signals every 5 ms (handler without SA_RESTART) neither cut nor stretch a
 * timed get. */
static void signals_do_not_change_waits(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    struct sigaction sa = { .sa_handler = on_alarm };
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = { .it_interval = { 0, 5000 }, .it_value = { 0, 5000 } };
    assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
    char c;
    size_t len;
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_queue_get(q, &c, 1, &len, 150), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    struct itimerval off = { 0 };
    setitimer(ITIMER_REAL, &off, NULL);
    assert_true(alarms > 3);
    assert_true(took >= 150 && took < 3000);
    mp_queue_free(q);
}

static void close_semantics(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    MP_ASSERT_OK(mp_queue_put(q, "a", 1, 0));
    MP_ASSERT_OK(mp_queue_put(q, "b", 1, 0));
    MP_ASSERT_OK(mp_queue_close(q));
    MP_ASSERT_ERR(mp_queue_close(q), -EPIPE);
    MP_ASSERT_ERR(mp_queue_put(q, "c", 1, MP_FOREVER), -EPIPE);
    char c;
    size_t len;
    MP_ASSERT_OK(mp_queue_get(q, &c, 1, &len, MP_FOREVER));
    assert_int_equal(c, 'a');
    void *m;
    MP_ASSERT_OK(mp_queue_get_alloc(q, &m, &len, MP_FOREVER));
    assert_int_equal(*(char *)m, 'b');
    free(m);
    MP_ASSERT_ERR(mp_queue_get(q, &c, 1, &len, MP_FOREVER), MP_EOF);
    MP_ASSERT_ERR(mp_queue_get(q, &c, 1, &len, 0), MP_EOF);
    MP_ASSERT_ERR(mp_queue_get_alloc(q, &m, &len, 0), MP_EOF);
    assert_true(mp_queue_empty(q));
    mp_queue_free(q);
}

static void joinable(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    MP_ASSERT_OK(mp_queue_join(q, 0)); /* nothing was put */
    MP_ASSERT_ERR(mp_queue_task_done(q), -EINVAL);
    MP_ASSERT_OK(mp_queue_put(q, "x", 1, 0));
    MP_ASSERT_OK(mp_queue_put(q, "y", 1, 0));
    MP_ASSERT_ERR(mp_queue_join(q, 0), -EAGAIN);
    MP_ASSERT_ERR(mp_queue_join(q, 30), -ETIMEDOUT);
    MP_ASSERT_OK(mp_queue_task_done(q));
    MP_ASSERT_ERR(mp_queue_join(q, 0), -EAGAIN);
    MP_ASSERT_OK(mp_queue_task_done(q));
    MP_ASSERT_OK(mp_queue_join(q, 0));
    MP_ASSERT_ERR(mp_queue_task_done(q), -EINVAL);
    mp_queue_free(q);
}

/* A deliberately damaged record is found by the checker; repair truncates
 * the ring there and the queue goes on working. */
static void ring_check_and_repair(void **state)
{
    (void)state;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    mp__ring *r = mp__queue_ring(q);
    unsigned char *data = mp__queue_data(q);
    for (int i = 0; i < 5; i++)
        MP_ASSERT_OK(mp_queue_put(q, &i, sizeof i, 0));
    MP_ASSERT_OK(mp__ring_check(r, data));
    /* records are 16 bytes: damage the third one's sequence number */
    uint32_t saved;
    memcpy(&saved, data + 2 * 16 + 4, 4);
    uint32_t bad = saved + 77;
    memcpy(data + 2 * 16 + 4, &bad, 4);
    MP_ASSERT_ERR(mp__ring_check(r, data), -EPROTO);
    assert_int_equal(mp__ring_repair(r, data, MP__RING_PRODUCER), 3);
    MP_ASSERT_OK(mp__ring_check(r, data));
    assert_int_equal(mp_queue_qsize(q), 2);
    MP_ASSERT_OK(mp__ring_repair(r, data, MP__RING_CONSUMER));
    int v;
    size_t len;
    MP_ASSERT_OK(mp_queue_put(q, &(int){ 42 }, sizeof(int), 0));
    MP_ASSERT_OK(mp_queue_get(q, &v, sizeof v, &len, 0));
    assert_int_equal(v, 0);
    MP_ASSERT_OK(mp_queue_get(q, &v, sizeof v, &len, 0));
    assert_int_equal(v, 1);
    MP_ASSERT_OK(mp_queue_get(q, &v, sizeof v, &len, 0));
    assert_int_equal(v, 42);
    MP_ASSERT_OK(mp__ring_check(r, data));
    /* damaged constants are reported, never "repaired" */
    r->size = 1000;
    MP_ASSERT_ERR(mp__ring_check(r, data), -EPROTO);
    MP_ASSERT_ERR(mp__ring_repair(r, data, MP__RING_PRODUCER), -EPROTO);
    r->size = 1u << 21;
    MP_ASSERT_OK(mp__ring_check(r, data));
    mp_queue_free(q);
}

/* ---- between processes --------------------------------------------------- */

static mp_queue *gq;

static int put_then_exit(void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++)
        if (mp_queue_put(gq, &i, sizeof i, MP_FOREVER) != 0)
            return 1;
    return 0; /* _exit right after the last put */
}

/* Nothing is lost when a producer exits right after its last put, even
 * when the queue had to block it (small ring). */
static void producer_exit_loses_nothing(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, &(mp_queue_opts){ .capacity = 256 }));
    int n = 5000;
    pid_t pid = mp_test_fork(put_then_exit, &n);
    for (int i = 0; i < n; i++) {
        int v;
        size_t len;
        MP_ASSERT_OK(mp_queue_get(gq, &v, sizeof v, &len, 10000));
        assert_int_equal(v, i);
    }
    exited_ok(pid);
    assert_true(mp_queue_empty(gq));
    mp_queue_free(gq);
}

static int blocked_getter(void *arg)
{
    (void)arg;
    char buf[8];
    size_t len;
    int rc = mp_queue_get(gq, buf, sizeof buf, &len, MP_FOREVER);
    return rc == MP_EOF ? 0 : 1;
}

static void close_wakes_blocked_getters(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, NULL));
    pid_t kids[3];
    for (int i = 0; i < 3; i++)
        kids[i] = mp_test_fork(blocked_getter, NULL);
    for (int i = 0; i < 3; i++)
        assert_true(mp_test_pid_sleeping(kids[i], 10000));
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_OK(mp_queue_close(gq));
    for (int i = 0; i < 3; i++)
        exited_ok(kids[i]);
    assert_true(mp_test_now_ms() - t0 < 5000);
    mp_queue_free(gq);
}

static int blocked_putter(void *arg)
{
    (void)arg;
    int rc = mp_queue_put(gq, "z", 1, MP_FOREVER);
    return rc == -EPIPE ? 0 : 1;
}

static void close_wakes_blocked_putters(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, &(mp_queue_opts){ .maxsize = 1 }));
    MP_ASSERT_OK(mp_queue_put(gq, "a", 1, 0));
    pid_t kids[2];
    for (int i = 0; i < 2; i++)
        kids[i] = mp_test_fork(blocked_putter, NULL);
    for (int i = 0; i < 2; i++)
        assert_true(mp_test_pid_sleeping(kids[i], 10000));
    MP_ASSERT_OK(mp_queue_close(gq));
    for (int i = 0; i < 2; i++)
        exited_ok(kids[i]);
    char c;
    size_t len;
    MP_ASSERT_OK(mp_queue_get(gq, &c, 1, &len, 0));
    assert_int_equal(c, 'a');
    MP_ASSERT_ERR(mp_queue_get(gq, &c, 1, &len, 0), MP_EOF);
    mp_queue_free(gq);
}

/* A getter SIGKILLed while asleep leaves the queue working for the others
 * (its "sleeper" bit costs one extra wake-up, then heals). */
static void getter_killed_while_waiting(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, NULL));
    pid_t k = mp_test_fork(blocked_getter, NULL);
    assert_true(mp_test_pid_sleeping(k, 10000));
    kill(k, SIGKILL);
    int st = mp_test_waitpid(k, 5000);
    assert_true(WIFSIGNALED(st));
    pid_t k2 = mp_test_fork(blocked_getter, NULL);
    assert_true(mp_test_pid_sleeping(k2, 10000));
    MP_ASSERT_OK(mp_queue_put(gq, "m", 1, 0));
    /* the live getter got the message (returns 1: not MP_EOF) */
    st = mp_test_waitpid(k2, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_true(mp_queue_empty(gq));
    MP_ASSERT_OK(mp__ring_check(mp__queue_ring(gq), mp__queue_data(gq)));
    mp_queue_free(gq);
}

static int join_waiter(void *arg)
{
    (void)arg;
    return mp_queue_join(gq, 10000) == 0 ? 0 : 1;
}

static void join_across_processes(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, NULL));
    for (int i = 0; i < 3; i++)
        MP_ASSERT_OK(mp_queue_put(gq, &i, sizeof i, 0));
    pid_t k = mp_test_fork(join_waiter, NULL);
    assert_true(mp_test_pid_sleeping(k, 10000));
    for (int i = 0; i < 3; i++) {
        int v;
        size_t len;
        MP_ASSERT_OK(mp_queue_get(gq, &v, sizeof v, &len, 0));
        MP_ASSERT_OK(mp_queue_task_done(gq));
    }
    exited_ok(k);
    mp_queue_free(gq);
}

/* ---- 4 producers x 4 consumers x 100k, per-producer sequence numbers ------ */

#define NPROD 4
#define NCONS 4
#define PER_PROD 100000

struct tag {
    uint32_t prod, seq;
    uint64_t check;
};

static uint8_t *seen; /* shared: NPROD * PER_PROD bytes, 1 once received */

static int producer(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    for (uint32_t s = 0; s < PER_PROD; s++) {
        struct tag t = { id, s, ((uint64_t)id << 32 | s) * 0x9e3779b97f4a7c15ull };
        /* vary the size: the tag then 0..40 bytes of padding */
        unsigned char buf[64];
        memcpy(buf, &t, sizeof t);
        size_t pad = s % 41;
        memset(buf + sizeof t, (int)(s & 0xff), pad);
        if (mp_queue_put(gq, buf, sizeof t + pad, MP_FOREVER) != 0)
            return 1;
    }
    return 0;
}

static int consumer(void *arg)
{
    (void)arg;
    int64_t last[NPROD];
    for (int i = 0; i < NPROD; i++)
        last[i] = -1;
    for (;;) {
        unsigned char buf[64];
        size_t len;
        int rc = mp_queue_get(gq, buf, sizeof buf, &len, MP_FOREVER);
        if (rc == MP_EOF)
            return 0;
        if (rc != 0)
            return 2;
        struct tag t;
        memcpy(&t, buf, sizeof t);
        if (t.prod >= NPROD || t.seq >= PER_PROD || len != sizeof t + t.seq % 41)
            return 3;
        if (t.check != ((uint64_t)t.prod << 32 | t.seq) * 0x9e3779b97f4a7c15ull)
            return 4;
        for (size_t i = sizeof t; i < len; i++)
            if (buf[i] != (unsigned char)(t.seq & 0xff))
                return 5;
        if ((int64_t)t.seq <= last[t.prod])
            return 6; /* reordered within one producer */
        last[t.prod] = t.seq;
        if (__atomic_exchange_n(&seen[t.prod * PER_PROD + t.seq], 1, __ATOMIC_RELAXED))
            return 7; /* duplicated */
    }
}

/* MP_TEST_TIMEOUT is per file; this one is the slowest and stays < 10 s. */
static void mpmc_4x4_sequences(void **state)
{
    (void)state;
    seen = mp_test_shared(NPROD * PER_PROD);
    MP_ASSERT_OK(mp_queue_new(&gq, &(mp_queue_opts){ .capacity = 4096 }));
    pid_t p[NPROD], c[NCONS];
    for (int i = 0; i < NCONS; i++)
        c[i] = mp_test_fork(consumer, NULL);
    for (int i = 0; i < NPROD; i++)
        p[i] = mp_test_fork(producer, (void *)(uintptr_t)i);
    for (int i = 0; i < NPROD; i++)
        exited_ok(p[i]);
    MP_ASSERT_OK(mp_queue_close(gq));
    for (int i = 0; i < NCONS; i++)
        exited_ok(c[i]);
    for (size_t i = 0; i < NPROD * PER_PROD; i++)
        if (!seen[i])
            fail_msg("message %zu/%zu lost", i / PER_PROD, i % PER_PROD);
    assert_true(mp_queue_empty(gq));
    MP_ASSERT_OK(mp__ring_check(mp__queue_ring(gq), mp__queue_data(gq)));
    mp_queue_free(gq);
    munmap(seen, NPROD * PER_PROD);
}

/* ---- named queues -------------------------------------------------------- */

static char qname[64];

static int named_child(void *arg)
{
    (void)arg;
    mp_queue *q;
    if (mp_queue_open(&q, qname, NULL, 0) != 0)
        return 1;
    int rc = mp_queue_put(q, "from child", 10, 1000);
    mp_queue_free(q);
    return rc == 0 ? 0 : 2;
}

static void named_queues(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "/mp_test_q_%d", (int)getpid());
    int fds = mp_test_fd_count();
    mp_queue *q, *q2;
    MP_ASSERT_ERR(mp_queue_open(&q, qname, NULL, 0), -ENOENT);
    MP_ASSERT_ERR(mp_queue_open(&q, "noslash", NULL, MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_queue_open(&q, "/a/b", NULL, MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_queue_open(&q, "/", NULL, MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_queue_open(&q, NULL, NULL, MP_CREATE), -EINVAL);
    MP_ASSERT_ERR(mp_queue_open(&q, qname, NULL, 0x100), -EINVAL);
    MP_ASSERT_OK(mp_queue_open(&q, qname, &(mp_queue_opts){ .maxsize = 4, .capacity = 512 },
                               MP_CREATE | MP_EXCL));
    MP_ASSERT_ERR(mp_queue_open(&q2, qname, NULL, MP_CREATE | MP_EXCL), -EEXIST);
    MP_ASSERT_ERR(mp_queue_open(&q2, qname, &(mp_queue_opts){ .maxsize = 5 }, 0), -EINVAL);
    MP_ASSERT_OK(mp_queue_open(&q2, qname, &(mp_queue_opts){ .maxsize = 4 }, MP_CREATE));
    pid_t k = mp_test_fork(named_child, NULL);
    exited_ok(k);
    char buf[32];
    size_t len;
    MP_ASSERT_OK(mp_queue_get(q2, buf, sizeof buf, &len, 1000));
    assert_int_equal(len, 10);
    assert_memory_equal(buf, "from child", 10);
    for (int i = 0; i < 4; i++)
        MP_ASSERT_OK(mp_queue_put(q, "x", 1, 0));
    assert_true(mp_queue_full(q2));
    MP_ASSERT_OK(mp_queue_unlink(qname));
    MP_ASSERT_ERR(mp_queue_unlink(qname), -ENOENT);
    MP_ASSERT_ERR(mp_queue_unlink("bad"), -EINVAL);
    /* the handles still work after unlink */
    MP_ASSERT_OK(mp_queue_get(q2, buf, sizeof buf, &len, 0));
    mp_queue_free(q);
    mp_queue_free(q2);
    assert_int_equal(mp_test_fd_count(), fds);
}

/* Names follow shm_open: one component of up to NAME_MAX bytes after '/'. */
static void name_length_limit(void **state)
{
    (void)state;
    char name[NAME_MAX + 3];
    int n = snprintf(name, sizeof name, "/mp_test_q_%d_", (int)getpid());
    memset(name + n, 'x', NAME_MAX + 1 - (size_t)n);
    name[NAME_MAX + 1] = '\0'; /* '/' + NAME_MAX bytes: valid */
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_open(&q, name, &(mp_queue_opts){ .capacity = 64 }, MP_CREATE | MP_EXCL));
    mp_queue_free(q);
    MP_ASSERT_OK(mp_queue_unlink(name));
    name[NAME_MAX + 1] = 'x';
    name[NAME_MAX + 2] = '\0'; /* one byte too many */
    MP_ASSERT_ERR(mp_queue_open(&q, name, NULL, MP_CREATE), -ENAMETOOLONG);
    MP_ASSERT_ERR(mp_queue_unlink(name), -ENAMETOOLONG);
}

/* A create that fails (here: no memory for the handle) leaves no name. */
static void failed_create_leaves_no_name(void **state)
{
    (void)state;
#if MP_TEST_NOMEM
    char name[64];
    snprintf(name, sizeof name, "/mp_test_qnomem_%d", (int)getpid());
    mp_queue *q = NULL;
    nomem = 1;
    int rc = mp_queue_open(&q, name, &(mp_queue_opts){ .capacity = 64 }, MP_CREATE | MP_EXCL);
    nomem = 0;
    MP_ASSERT_ERR(rc, -ENOMEM);
    assert_null(q);
    MP_ASSERT_ERR(mp_queue_unlink(name), -ENOENT);
#else
    skip();
#endif
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(fifo_and_sizes),
        cmocka_unit_test(zero_length_messages),
        cmocka_unit_test(capacity_limits),
        cmocka_unit_test(small_buffer_keeps_message),
        cmocka_unit_test(get_alloc_roundtrip),
        cmocka_unit_test(wrap_around),
        cmocka_unit_test(maxsize_full_empty),
        cmocka_unit_test(get_timeouts),
        cmocka_unit_test(signals_do_not_change_waits),
        cmocka_unit_test(close_semantics),
        cmocka_unit_test(joinable),
        cmocka_unit_test(ring_check_and_repair),
        cmocka_unit_test(producer_exit_loses_nothing),
        cmocka_unit_test(close_wakes_blocked_getters),
        cmocka_unit_test(close_wakes_blocked_putters),
        cmocka_unit_test(getter_killed_while_waiting),
        cmocka_unit_test(join_across_processes),
        cmocka_unit_test(mpmc_4x4_sequences),
        cmocka_unit_test(named_queues),
        cmocka_unit_test(name_length_limit),
        cmocka_unit_test(failed_create_leaves_no_name),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0], argc, argv);
}
