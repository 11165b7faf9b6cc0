/* Description: crash safety of the queue - processes SIGKILLed while holding
 * its locks, between commit and wake-up, and at random instants in loops of
 * checksummed messages: no corrupted or duplicated message, no hang, the
 * queue keeps working. */
/* MP_TEST_TIMEOUT 60 */
#include "mp_test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "internal/ring.h"

static mp_queue *gq;

static void killed_by_sigkill(pid_t pid)
{
    int st = mp_test_waitpid(pid, 10000);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("child %d: status 0x%x, expected SIGKILL", (int)pid, st);
}

static void exited_ok(pid_t pid)
{
    int st = mp_test_waitpid(pid, 20000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %d: status 0x%x", (int)pid, st);
}

/* Writes a record at the tail by hand, as put does, without committing. */
static uint64_t write_record(mp__ring *r, unsigned char *data, const void *msg, uint32_t len)
{
    uint64_t t = r->tail;
    uint32_t pos = MP__IDX_POS(t), hdr[2] = { len, MP__IDX_NUM(t) };
    memcpy(data + (pos & (r->size - 1)), hdr, 8);
    memcpy(data + ((pos + 8) & (r->size - 1)), msg, len); /* no wrap in these tests */
    return MP__IDX(pos + 8 + ((len + 7) & ~7u), MP__IDX_NUM(t) + 1);
}

/* ---- deterministic deaths ---------------------------------------------------- */

static int die_mid_put(void *arg)
{
    (void)arg;
    mp__ring *r = mp__queue_ring(gq);
    if (mp_lock_acquire(&r->plock, 1000) != 0)
        return 1;
    /* half a record: a header claiming 100 bytes, some garbage, no commit */
    char junk[100];
    memset(junk, 0xee, sizeof junk);
    write_record(r, mp__queue_data(gq), junk, 60);
    uint32_t lie = 100;
    memcpy(mp__queue_data(gq) + (MP__IDX_POS(r->tail) & (r->size - 1)), &lie, 4);
    raise(SIGKILL);
    return 2;
}

/* A producer killed in the middle of writing its record, holding plock: the
 * next put gets the lock (robust: -EOWNERDEAD inside), overwrites the
 * half-written record, and getters never see it. */
static void producer_killed_mid_put(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, &(mp_queue_opts){ .capacity = 1024 }));
    MP_ASSERT_OK(mp_queue_put(gq, "before", 6, 0));
    killed_by_sigkill(mp_test_fork(die_mid_put, NULL));
    assert_int_equal(mp_queue_qsize(gq), 1);
    MP_ASSERT_OK(mp_queue_put(gq, "after", 5, 1000));
    char buf[200];
    size_t len;
    MP_ASSERT_OK(mp_queue_get(gq, buf, sizeof buf, &len, 0));
    assert_true(len == 6 && memcmp(buf, "before", 6) == 0);
    MP_ASSERT_OK(mp_queue_get(gq, buf, sizeof buf, &len, 0));
    assert_true(len == 5 && memcmp(buf, "after", 5) == 0);
    MP_ASSERT_ERR(mp_queue_get(gq, buf, sizeof buf, &len, 0), -EAGAIN);
    MP_ASSERT_OK(mp__ring_check(mp__queue_ring(gq), mp__queue_data(gq)));
    mp_queue_free(gq);
}

static int die_mid_get(void *arg)
{
    (void)arg;
    mp__ring *r = mp__queue_ring(gq);
    if (mp_lock_acquire(&r->clock, 1000) != 0)
        return 1;
    /* copying the message out... then killed before committing head */
    char buf[16];
    memcpy(buf, mp__queue_data(gq) + 8, 5);
    raise(SIGKILL);
    return 2;
}

/* A consumer killed while copying a message out, holding clock: the message
 * was never delivered, so the next getter gets it. */
static void consumer_killed_mid_get(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, NULL));
    MP_ASSERT_OK(mp_queue_put(gq, "keep!", 5, 0));
    killed_by_sigkill(mp_test_fork(die_mid_get, NULL));
    char buf[16];
    size_t len;
    MP_ASSERT_OK(mp_queue_get(gq, buf, sizeof buf, &len, 1000));
    assert_true(len == 5 && memcmp(buf, "keep!", 5) == 0);
    assert_true(mp_queue_empty(gq));
    MP_ASSERT_OK(mp__ring_check(mp__queue_ring(gq), mp__queue_data(gq)));
    mp_queue_free(gq);
}

static int die_after_commit(void *arg)
{
    (void)arg;
    mp__ring *r = mp__queue_ring(gq);
    if (mp_lock_acquire(&r->plock, 1000) != 0)
        return 1;
    uint64_t t = write_record(r, mp__queue_data(gq), "committed", 9);
    __atomic_store_n(&r->tail, t, __ATOMIC_SEQ_CST);
    raise(SIGKILL); /* still holding plock, and no wake-up sent */
    return 2;
}

static int getter(void *arg)
{
    (void)arg;
    char buf[16];
    size_t len;
    int rc = mp_queue_get(gq, buf, sizeof buf, &len, 10000);
    return rc == 0 && len == 9 && memcmp(buf, "committed", 9) == 0 ? 0 : 1;
}

/* A producer killed after its commit but before it released plock and woke
 * the sleeping getter: the message is delivered once, the sleeper notices
 * within the rescue interval, and the next put recovers the lock. */
static void producer_killed_between_commit_and_wake(void **state)
{
    (void)state;
    MP_ASSERT_OK(mp_queue_new(&gq, NULL));
    pid_t g = mp_test_fork(getter, NULL);
    assert_true(mp_test_pid_sleeping(g, 10000));
    int64_t t0 = mp_test_now_ms();
    killed_by_sigkill(mp_test_fork(die_after_commit, NULL));
    exited_ok(g);
    assert_true(mp_test_now_ms() - t0 < 5000);
    assert_true(mp_queue_empty(gq));
    MP_ASSERT_OK(mp_queue_put(gq, "x", 1, 1000)); /* plock recovered */
    assert_int_equal(mp_queue_qsize(gq), 1);
    MP_ASSERT_OK(mp__ring_check(mp__queue_ring(gq), mp__queue_data(gq)));
    mp_queue_free(gq);
}

/* ---- random SIGKILLs in loops of checksummed messages ------------------------ */

#define SLOTS_P 3
#define SLOTS_C 3
#define MAX_IDS (1u << 22)
#define MSG_MAX 600

struct torture {
    uint64_t next_id;
    uint32_t stop;
    uint32_t corrupt, dup, reorder;
    uint64_t received;
    uint8_t seen[MAX_IDS / 8];
};
static struct torture *tt;

struct msg {
    uint64_t id;
    uint32_t slot, incarnation;
    uint64_t seq;
    uint32_t len;
    uint32_t pad;
    uint64_t sum; /* FNV-1a of the whole message with sum = 0 */
};

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

struct who {
    uint32_t slot, incarnation;
};

static int t_producer(void *arg)
{
    struct who w = *(struct who *)arg;
    unsigned seed = w.slot * 7919u + w.incarnation;
    unsigned char buf[MSG_MAX];
    for (uint64_t seq = 0; !__atomic_load_n(&tt->stop, __ATOMIC_ACQUIRE); seq++) {
        uint64_t id = __atomic_fetch_add(&tt->next_id, 1, __ATOMIC_SEQ_CST);
        if (id >= MAX_IDS)
            break;
        uint32_t len = (uint32_t)(sizeof(struct msg) + rand_r(&seed) % (MSG_MAX - sizeof(struct msg)));
        struct msg m = { id, w.slot, w.incarnation, seq, len, 0, 0 };
        memcpy(buf, &m, sizeof m);
        for (uint32_t i = sizeof m; i < len; i++)
            buf[i] = (unsigned char)(id * 31 + i);
        m.sum = fnv(buf, len);
        memcpy(buf, &m, sizeof m);
        int rc = mp_queue_put(gq, buf, len, MP_FOREVER);
        if (rc != 0)
            return 10;
    }
    return 0;
}

static int t_consumer(void *arg)
{
    (void)arg;
    unsigned char buf[MSG_MAX];
    uint32_t last_inc[SLOTS_P] = { 0 };
    int64_t last_seq[SLOTS_P];
    for (int i = 0; i < SLOTS_P; i++)
        last_seq[i] = -1;
    for (;;) {
        size_t len;
        int rc = mp_queue_get(gq, buf, sizeof buf, &len, MP_FOREVER);
        if (rc == MP_EOF)
            return 0;
        if (rc != 0)
            return 10;
        struct msg m;
        if (len < sizeof m) {
            __atomic_fetch_add(&tt->corrupt, 1, __ATOMIC_RELAXED);
            continue;
        }
        memcpy(&m, buf, sizeof m);
        uint64_t sum = m.sum;
        m.sum = 0;
        memcpy(buf, &m, sizeof m);
        if (m.len != len || m.slot >= SLOTS_P || m.id >= MAX_IDS || fnv(buf, len) != sum) {
            __atomic_fetch_add(&tt->corrupt, 1, __ATOMIC_RELAXED);
            continue;
        }
        /* FIFO per producer: within one producer process, seq only grows;
         * a later incarnation of a slot never comes before an earlier one */
        if (m.incarnation < last_inc[m.slot] ||
            (m.incarnation == last_inc[m.slot] && (int64_t)m.seq <= last_seq[m.slot]))
            __atomic_fetch_add(&tt->reorder, 1, __ATOMIC_RELAXED);
        last_inc[m.slot] = m.incarnation;
        last_seq[m.slot] = (int64_t)m.seq;
        uint8_t bit = (uint8_t)(1u << (m.id & 7));
        if (__atomic_fetch_or(&tt->seen[m.id >> 3], bit, __ATOMIC_RELAXED) & bit)
            __atomic_fetch_add(&tt->dup, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&tt->received, 1, __ATOMIC_RELAXED);
    }
}

static void random_sigkills(void **state)
{
    (void)state;
    tt = mp_test_shared(sizeof *tt);
    MP_ASSERT_OK(mp_queue_new(&gq, &(mp_queue_opts){ .capacity = 2048 }));
    struct who who[SLOTS_P + SLOTS_C];
    pid_t pid[SLOTS_P + SLOTS_C];
    for (int i = 0; i < SLOTS_P + SLOTS_C; i++) {
        who[i] = (struct who){ (uint32_t)(i % SLOTS_P), 0 };
        pid[i] = mp_test_fork(i < SLOTS_P ? t_producer : t_consumer, &who[i]);
    }
    unsigned seed = (unsigned)getpid();
    int kills = 0;
    int64_t end = mp_test_now_ms() + 2500;
    while (mp_test_now_ms() < end) {
        struct timespec d = { 0, (long)(rand_r(&seed) % 2000) * 1000 };
        nanosleep(&d, NULL); /* a random instant, not a synchronisation */
        int i = (int)(rand_r(&seed) % (SLOTS_P + SLOTS_C));
        kill(pid[i], SIGKILL);
        int st = mp_test_waitpid(pid[i], 10000);
        if (WIFEXITED(st))
            fail_msg("slot %d exited with %d before it was killed", i, WEXITSTATUS(st));
        kills++;
        who[i].incarnation++;
        pid[i] = mp_test_fork(i < SLOTS_P ? t_producer : t_consumer, &who[i]);
    }
    uint64_t before_stop = __atomic_load_n(&tt->received, __ATOMIC_RELAXED);
    __atomic_store_n(&tt->stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < SLOTS_P; i++)
        exited_ok(pid[i]); /* survivors finish: no producer hangs */
    /* the ring is sound after all those deaths */
    mp__ring *r = mp__queue_ring(gq);
    int rc = mp_lock_acquire(&r->plock, 5000);
    assert_true(rc == 0 || rc == -EOWNERDEAD);
    MP_ASSERT_OK(mp__ring_check(r, mp__queue_data(gq)));
    MP_ASSERT_OK(mp_lock_release(&r->plock));
    MP_ASSERT_OK(mp_queue_close(gq));
    for (int i = SLOTS_P; i < SLOTS_P + SLOTS_C; i++)
        exited_ok(pid[i]); /* consumers drain and see MP_EOF */
    uint64_t ids = __atomic_load_n(&tt->next_id, __ATOMIC_RELAXED);
    if (ids > MAX_IDS)
        ids = MAX_IDS;
    uint64_t got = tt->received;
    print_message("torture: %d kills, %llu messages put, %llu received, %llu lost\n", kills,
                  (unsigned long long)ids, (unsigned long long)got,
                  (unsigned long long)(ids - got));
    assert_int_equal(tt->corrupt, 0);
    assert_int_equal(tt->dup, 0);
    assert_int_equal(tt->reorder, 0);
    assert_true(got <= ids);
    /* each death loses at most the one message its process was putting or
     * had just taken */
    assert_true(ids - got <= (uint64_t)kills);
    assert_true(kills > 20);
    assert_true(before_stop > 1000); /* the queue kept working throughout */
    assert_true(mp_queue_empty(gq));
    mp_queue_free(gq);
    munmap(tt, sizeof *tt);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(producer_killed_mid_put),
        cmocka_unit_test(consumer_killed_mid_get),
        cmocka_unit_test(producer_killed_between_commit_and_wake),
        cmocka_unit_test(random_sigkills),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0], argc, argv);
}
