/* src/queue.c - the shared-memory message queue (see internal/ring.h for the
 * layout and the commit protocol). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/core.h"
#include "internal/ring.h"
#include "mproc/queue.h"

struct mp_queue {
    mp__ring *r;
    unsigned char *data; /* r->size bytes */
    size_t map_len;
};

int64_t mp__queue_spin_ns = 20000;
unsigned mp__queue_spin_backoff = 64;
int64_t mp__queue_spin_lag_ns = 300;

mp__ring *mp__queue_ring(struct mp_queue *q) { return q->r; }
unsigned char *mp__queue_data(struct mp_queue *q) { return q->data; }

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

static inline uint32_t rec_size(uint32_t len)
{
    return MP__RING_HDR + ((len + MP__RING_ALIGN - 1) & ~(MP__RING_ALIGN - 1));
}

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static size_t header_bytes(void)
{
    size_t pg = page_size();
    return (sizeof(mp__ring) + pg - 1) / pg * pg;
}

/* ---- ring geometry and initialisation -------------------------------------- */

static int ring_geometry(const mp_queue_opts *opts, uint32_t *size, uint32_t *cap,
                         uint32_t *maxsize)
{
    size_t c = opts && opts->capacity ? opts->capacity : MP_QUEUE_DEFAULT_CAPACITY;
    size_t m = opts ? opts->maxsize : 0;
    if (c > MP_QUEUE_MAX_CAPACITY || m > MP_QUEUE_MAX_MAXSIZE)
        return -EINVAL;
    size_t need = rec_size((uint32_t)c), s = 64;
    while (s < need)
        s <<= 1;
    *size = (uint32_t)s;
    *cap = (uint32_t)c;
    *maxsize = (uint32_t)m;
    return 0;
}

static int ring_init(mp__ring *r, uint32_t size, uint32_t cap, uint32_t maxsize)
{
    memset(r, 0, sizeof *r);
    r->version = MP__RING_VERSION;
    r->size = size;
    r->capacity = cap;
    r->maxsize = maxsize;
    r->data_off = (uint32_t)header_bytes();
    int rc = mp_lock_init(&r->plock);
    if (rc == 0)
        rc = mp_lock_init(&r->clock);
    if (rc < 0)
        return rc;
    __atomic_store_n(&r->magic, MP__RING_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/* The constants a checker and an attaching process rely on. */
static bool ring_constants_ok(const mp__ring *r, size_t map_len)
{
    return r->version == MP__RING_VERSION && r->size >= 64 &&
           (r->size & (r->size - 1)) == 0 && rec_size(r->capacity) <= r->size &&
           r->capacity <= MP_QUEUE_MAX_CAPACITY && r->data_off == header_bytes() &&
           (map_len == 0 || (size_t)r->data_off + r->size == map_len);
}

/* ---- checker and repair (see ring.h) ----------------------------------------- */

/* Walks the records from head h to tail t.  Returns the index word just past
 * the last valid record (== t when the chain is whole). */
static uint64_t ring_walk(const mp__ring *r, const unsigned char *data, uint64_t h,
                          uint64_t t)
{
    uint32_t mask = r->size - 1;
    uint64_t at = h;
    while (MP__IDX_NUM(at) != MP__IDX_NUM(t)) {
        uint32_t left = MP__IDX_POS(t) - MP__IDX_POS(at);
        uint32_t hdr[2];
        if (left < MP__RING_HDR || (MP__IDX_POS(at) & (MP__RING_ALIGN - 1)))
            break;
        memcpy(hdr, data + (MP__IDX_POS(at) & mask), sizeof hdr);
        if (hdr[1] != MP__IDX_NUM(at) || hdr[0] > r->capacity || rec_size(hdr[0]) > left)
            break;
        at = MP__IDX(MP__IDX_POS(at) + rec_size(hdr[0]), MP__IDX_NUM(at) + 1);
    }
    return at;
}

int mp__ring_check(const mp__ring *r, const unsigned char *data)
{
    if (__atomic_load_n(&r->magic, __ATOMIC_ACQUIRE) != MP__RING_MAGIC ||
        !ring_constants_ok(r, 0) || r->closed > 1)
        return -EPROTO;
    uint64_t h = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
    uint64_t t = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST);
    uint32_t bytes = MP__IDX_POS(t) - MP__IDX_POS(h);
    uint32_t msgs = MP__IDX_NUM(t) - MP__IDX_NUM(h);
    if (bytes > r->size || msgs > bytes / MP__RING_HDR || (r->maxsize && msgs > r->maxsize))
        return -EPROTO;
    uint64_t hc = __atomic_load_n(&r->head_cache, __ATOMIC_RELAXED);
    if ((uint32_t)(MP__IDX_POS(t) - MP__IDX_POS(hc)) > r->size ||
        (int32_t)(MP__IDX_NUM(h) - MP__IDX_NUM(hc)) < 0)
        return -EPROTO;
    /* tail_cache may lag behind head only transiently for a consumer that
     * holds clock; between calls head <= tail_cache <= tail. */
    uint64_t tc = __atomic_load_n(&r->tail_cache, __ATOMIC_RELAXED);
    if ((int32_t)(MP__IDX_NUM(t) - MP__IDX_NUM(tc)) < 0)
        return -EPROTO;
    if (ring_walk(r, data, h, t) != t)
        return -EPROTO;
    return 0;
}

int mp__ring_repair(mp__ring *r, unsigned char *data, int side)
{
    if (__atomic_load_n(&r->magic, __ATOMIC_ACQUIRE) != MP__RING_MAGIC ||
        !ring_constants_ok(r, 0))
        return -EPROTO;
    if (r->closed > 1)
        __atomic_store_n(&r->closed, 1, __ATOMIC_SEQ_CST);
    uint64_t h = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
    if (side == MP__RING_CONSUMER) {
        /* head is one atomic word: always a committed value.  Only the cache
         * can be out of step (a consumer died between reloading it and
         * committing); the live tail is always a valid cache. */
        __atomic_store_n(&r->tail_cache, __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST),
                         __ATOMIC_RELAXED);
        return 0;
    }
    __atomic_store_n(&r->head_cache, h, __ATOMIC_RELAXED);
    uint64_t t = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
    uint32_t bytes = MP__IDX_POS(t) - MP__IDX_POS(h);
    uint64_t good;
    if (bytes > r->size || (int32_t)(MP__IDX_NUM(t) - MP__IDX_NUM(h)) < 0)
        good = h; /* indexes out of step: nothing queued can be trusted */
    else
        good = ring_walk(r, data, h, t);
    if (good == t)
        return 0;
    /* Truncate at the first bad record.  Consumers only ever read below the
     * tail they loaded, and the bad record fails their own validation. */
    __atomic_store_n(&r->tail, good, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->tail_cache, good, __ATOMIC_RELAXED);
    return (int)(MP__IDX_NUM(t) - MP__IDX_NUM(good));
}

/* ---- locks ---------------------------------------------------------------------- */

/* Takes one side's lock within the deadline; repairs the side when the last
 * holder died with it.  0, or the deadline code, -EINTR. */
static int side_lock(mp_queue *q, mp_lock *l, int side, const mp__deadline *dl)
{
    int ms;
    if (dl->nowait)
        ms = 0;
    else if (mp__deadline_forever(dl))
        ms = MP_FOREVER;
    else {
        int64_t left = dl->at_ns - mp__now_ns();
        if (left <= 0)
            return -ETIMEDOUT;
        int64_t m = (left + 999999) / 1000000;
        ms = m > INT_MAX ? INT_MAX : (int)m;
    }
    int rc = mp_lock_acquire(l, ms);
    if (MP__LIKELY(rc == 0))
        return 0;
    if (rc == -EOWNERDEAD) {
        mp__ring_repair(q->r, q->data, side);
        return 0;
    }
    return rc;
}

static void side_unlock(mp_lock *l)
{
    int rc = mp_lock_release(l);
    if (rc < 0)
        mp__panic("queue lock release: %d", rc);
}

/* ---- sleeping (see "Sleeping" in ring.h) ----------------------------------------- */

static void wake_word(uint32_t *word)
{
    uint32_t v = __atomic_load_n(word, __ATOMIC_SEQ_CST);
    if (MP__UNLIKELY(v & 1)) {
        if (__atomic_compare_exchange_n(word, &v, v + 1, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
            mp__futex_wake(word, INT32_MAX);
    }
}

/* 1 + the CPU this thread runs on (glibc reads it from rseq: no syscall). */
static inline uint32_t cpu_tag(void)
{
    int c = sched_getcpu();
    return c < 0 ? 0 : (uint32_t)c + 1;
}

/* Records where this side last ran, writing the shared hint only when it
 * changed (so the line stays clean in the common case). */
static inline void note_cpu(uint32_t *hint)
{
    uint32_t c = cpu_tag();
    if (__atomic_load_n(hint, __ATOMIC_RELAXED) != c)
        __atomic_store_n(hint, c, __ATOMIC_RELAXED);
}

/* Whether spinning before sleeping can help: only when the peer that would
 * end the wait can run at the same time as us.  peer_cpu is where the other
 * side last ran: the same CPU as ours means it cannot run while we spin.
 * With no hint yet, spin only if this process may use more than one CPU
 * (sched_getaffinity, re-read at most every 50 ms: users pin after fork). */
static bool may_spin(uint32_t peer_cpu)
{
    static int ncpu_cache;
    static int64_t checked_at;
    if (mp__queue_spin_ns <= 0)
        return false;
    if (peer_cpu != 0)
        return peer_cpu != cpu_tag();
    int64_t now = mp__now_ns();
    if (now - __atomic_load_n(&checked_at, __ATOMIC_RELAXED) > 50000000 ||
        __atomic_load_n(&ncpu_cache, __ATOMIC_RELAXED) == 0) {
        cpu_set_t set;
        int n = 1;
        if (sched_getaffinity(0, sizeof set, &set) == 0)
            n = CPU_COUNT(&set);
        __atomic_store_n(&ncpu_cache, n, __ATOMIC_RELAXED);
        __atomic_store_n(&checked_at, now, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&ncpu_cache, __ATOMIC_RELAXED) > 1;
}

static bool data_ready(const mp__ring *r)
{
    uint64_t h = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
    uint64_t t = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST);
    return MP__IDX_NUM(t) != MP__IDX_NUM(h) || __atomic_load_n(&r->closed, __ATOMIC_SEQ_CST);
}

/* Room for rec bytes and one more message; with slack, for a quarter of the
 * ring (and of maxsize) more, see wait_for. */
static bool space_ready(const mp__ring *r, uint32_t rec, bool slack)
{
    uint64_t t = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST);
    uint64_t h = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
    uint32_t need = rec, limit = r->maxsize;
    if (slack) {
        need = rec > r->size / 4 ? rec : r->size / 4;
        limit -= limit / 4;
    }
    return (r->size - (MP__IDX_POS(t) - MP__IDX_POS(h)) >= need &&
            (!r->maxsize || MP__IDX_NUM(t) - MP__IDX_NUM(h) < limit)) ||
           __atomic_load_n(&r->closed, __ATOMIC_SEQ_CST);
}

static bool join_ready(const mp__ring *r)
{
    uint32_t d = __atomic_load_n(&r->done, __ATOMIC_SEQ_CST);
    uint64_t t = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST);
    return MP__IDX_NUM(t) == d;
}

enum { WAIT_DATA, WAIT_SPACE, WAIT_JOIN };

static bool ready(const mp__ring *r, int what, uint32_t rec, bool slack)
{
    switch (what) {
    case WAIT_DATA:  return data_ready(r);
    case WAIT_SPACE: return space_ready(r, rec, slack);
    default:         return join_ready(r);
    }
}

/* A consumer that caught up by spinning lets the producer get ahead a
 * little (up to mp__queue_spin_lag_ns, or until an eighth of the ring is
 * filled) before it takes the message, so it does not read each record
 * while the producer is writing the next one. */
static void lag_behind(const mp__ring *r)
{
    int64_t until = mp__now_ns() + mp__queue_spin_lag_ns;
    for (unsigned i = 1;; i++) {
        cpu_relax();
        if ((i & 3) == 0) {
            uint64_t t = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
            uint64_t h = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
            if (MP__IDX_POS(t) - MP__IDX_POS(h) >= r->size / 8 ||
                __atomic_load_n(&r->closed, __ATOMIC_RELAXED) || mp__now_ns() >= until)
                return;
        }
    }
}

/* Waits until the condition `what` may hold.  0: re-check (the caller takes
 * its lock again); the deadline code or -EINTR otherwise. */
static int wait_for(mp__ring *r, int what, uint32_t rec, const mp__deadline *dl)
{
    if (dl->nowait)
        return -EAGAIN;
    uint32_t peer = what == WAIT_DATA    ? __atomic_load_n(&r->pcpu, __ATOMIC_RELAXED)
                    : what == WAIT_SPACE ? __atomic_load_n(&r->ccpu, __ATOMIC_RELAXED)
                                         : UINT32_MAX; /* join: never spin */
    if (peer != UINT32_MAX && may_spin(peer)) {
        /* A producer spinning on a full ring waits for a quarter of it to
         * drain, not for the first free record: writing right behind the
         * consumer would steal each cache line it is still reading.  After
         * the spin it takes any room, so this never blocks a put that fits. */
        int64_t until = mp__now_ns() + mp__queue_spin_ns;
        for (unsigned i = 1, pause = 1;; i++) {
            if (ready(r, what, rec, true)) {
                if (what == WAIT_DATA && mp__queue_spin_lag_ns > 0)
                    lag_behind(r);
                return 0;
            }
            for (unsigned k = 0; k < pause; k++)
                cpu_relax();
            if (pause < mp__queue_spin_backoff)
                pause <<= 1;
            if ((i & 15) == 0 && mp__now_ns() >= until)
                break;
        }
    }
    uint32_t *word = what == WAIT_DATA ? &r->data_word
                     : what == WAIT_SPACE ? &r->space_word : &r->join_word;
    uint32_t w = __atomic_load_n(word, __ATOMIC_SEQ_CST);
    if (!(w & 1)) {
        if (!__atomic_compare_exchange_n(word, &w, w | 1, false, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST))
            return 0; /* a waker moved it: re-check */
        w |= 1;
    }
    if (ready(r, what, rec, false))
        return 0;
    /* Sleep in slices of at most MP_SYNC_RESCUE_MS: a process killed between
     * its commit and its wake-up (or between setting closed and waking)
     * never leaves a sleeper waiting for good; the sleeper re-checks. */
    mp__deadline slice = *dl;
    int64_t rescue = mp__now_ns() + (int64_t)MP_SYNC_RESCUE_MS * 1000000;
    bool sliced = slice.at_ns > rescue;
    if (sliced)
        slice.at_ns = rescue;
    int rc = mp__wait_word(word, w, &slice);
    return rc == -ETIMEDOUT && sliced ? 0 : rc;
}

/* ---- copying records in and out -------------------------------------------------- */

static void copy_in(mp_queue *q, uint32_t pos, const void *src, uint32_t n)
{
    uint32_t mask = q->r->size - 1, off = pos & mask, first = q->r->size - off;
    if (n <= first) {
        memcpy(q->data + off, src, n);
    } else {
        memcpy(q->data + off, src, first);
        memcpy(q->data, (const char *)src + first, n - first);
    }
}

static void copy_out(const mp_queue *q, uint32_t pos, void *dst, uint32_t n)
{
    uint32_t mask = q->r->size - 1, off = pos & mask, first = q->r->size - off;
    if (n <= first) {
        memcpy(dst, q->data + off, n);
    } else {
        memcpy(dst, q->data + off, first);
        memcpy((char *)dst + first, q->data, n - first);
    }
}

/* ---- put / get -------------------------------------------------------------------- */

int mp_queue_put(mp_queue *q, const void *msg, size_t len, int timeout_ms)
{
    if (!q || (!msg && len))
        return -EINVAL;
    mp__ring *r = q->r;
    if (len > r->capacity)
        return -EMSGSIZE;
    uint32_t rec = rec_size((uint32_t)len);
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    for (;;) {
        int rc = side_lock(q, &r->plock, MP__RING_PRODUCER, &dl);
        if (rc < 0)
            return rc;
        if (__atomic_load_n(&r->closed, __ATOMIC_RELAXED)) {
            side_unlock(&r->plock);
            return -EPIPE;
        }
        uint64_t t = r->tail, h = r->head_cache;
        uint32_t tpos = MP__IDX_POS(t), tnum = MP__IDX_NUM(t);
        if (r->size - (tpos - MP__IDX_POS(h)) < rec ||
            (r->maxsize && tnum - MP__IDX_NUM(h) >= r->maxsize)) {
            h = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
            r->head_cache = h;
        }
        if (r->size - (tpos - MP__IDX_POS(h)) >= rec &&
            (!r->maxsize || tnum - MP__IDX_NUM(h) < r->maxsize)) {
            uint32_t hdr[2] = { (uint32_t)len, tnum };
            memcpy(q->data + (tpos & (r->size - 1)), hdr, sizeof hdr);
            if (len)
                copy_in(q, tpos + MP__RING_HDR, msg, (uint32_t)len);
            /* COMMIT: one seq_cst store publishes the whole record. */
            __atomic_store_n(&r->tail, MP__IDX(tpos + rec, tnum + 1), __ATOMIC_SEQ_CST);
            note_cpu(&r->pcpu);
            side_unlock(&r->plock);
            wake_word(&r->data_word);
            return 0;
        }
        side_unlock(&r->plock);
        rc = wait_for(r, WAIT_SPACE, rec, &dl);
        if (rc < 0)
            return rc;
    }
}

/* get and get_alloc: exactly one of buf (with cap) and allocp is used. */
static int get_common(mp_queue *q, void *buf, size_t cap, void **allocp, size_t *len,
                      int timeout_ms)
{
    mp__ring *r = q->r;
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    for (;;) {
        int rc = side_lock(q, &r->clock, MP__RING_CONSUMER, &dl);
        if (rc < 0)
            return rc;
        uint64_t h = r->head, t = r->tail_cache;
        if (MP__IDX_NUM(t) == MP__IDX_NUM(h) ||
            (int32_t)(MP__IDX_NUM(t) - MP__IDX_NUM(h)) < 0) {
            t = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
            r->tail_cache = t;
        }
        if (MP__IDX_NUM(t) == MP__IDX_NUM(h) &&
            __atomic_load_n(&r->closed, __ATOMIC_ACQUIRE)) {
            /* close stored closed under plock after every earlier put had
             * committed: a tail read after seeing closed is final. */
            t = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
            r->tail_cache = t;
            if (MP__IDX_NUM(t) == MP__IDX_NUM(h)) {
                side_unlock(&r->clock);
                return MP_EOF;
            }
        }
        if (MP__IDX_NUM(t) != MP__IDX_NUM(h)) {
            uint32_t hpos = MP__IDX_POS(h), hdr[2];
            memcpy(hdr, q->data + (hpos & (r->size - 1)), sizeof hdr);
            uint32_t mlen = hdr[0], rec = rec_size(mlen);
            if (MP__UNLIKELY(hdr[1] != MP__IDX_NUM(h) || mlen > r->capacity ||
                             rec > MP__IDX_POS(t) - hpos)) {
                side_unlock(&r->clock);
                return -EPROTO; /* only a stray write into the mapping does this */
            }
            void *dst = buf;
            if (allocp) {
                dst = malloc(mlen ? mlen : 1);
                if (!dst) {
                    side_unlock(&r->clock);
                    return -ENOMEM;
                }
            } else if (mlen > cap) {
                side_unlock(&r->clock);
                *len = mlen;
                return -EMSGSIZE;
            }
            if (mlen)
                copy_out(q, hpos + MP__RING_HDR, dst, mlen);
            /* COMMIT: the message leaves the ring only now. */
            __atomic_store_n(&r->head, MP__IDX(hpos + rec, MP__IDX_NUM(h) + 1),
                             __ATOMIC_SEQ_CST);
            note_cpu(&r->ccpu);
            side_unlock(&r->clock);
            wake_word(&r->space_word);
            *len = mlen;
            if (allocp)
                *allocp = dst;
            return 0;
        }
        side_unlock(&r->clock);
        rc = wait_for(r, WAIT_DATA, 0, &dl);
        if (rc < 0)
            return rc;
    }
}

int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, int timeout_ms)
{
    if (!q || !len || (!buf && cap))
        return -EINVAL;
    return get_common(q, buf, cap, NULL, len, timeout_ms);
}

int mp_queue_get_alloc(mp_queue *q, void **msg, size_t *len, int timeout_ms)
{
    if (!q || !msg || !len)
        return -EINVAL;
    return get_common(q, NULL, 0, msg, len, timeout_ms);
}

/* ---- sizes ---------------------------------------------------------------------- */

/* head and tail at one instant: head is re-read until it did not move around
 * the read of tail, so (h, t) is the pair that held when tail was read. */
static void snapshot(const mp__ring *r, uint64_t *h, uint64_t *t)
{
    uint64_t h1 = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE), h2;
    for (;;) {
        *t = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
        h2 = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        if (h2 == h1)
            break;
        h1 = h2;
    }
    *h = h1;
}

size_t mp_queue_qsize(mp_queue *q)
{
    if (!q)
        return 0;
    uint64_t h, t;
    snapshot(q->r, &h, &t);
    return MP__IDX_NUM(t) - MP__IDX_NUM(h);
}

bool mp_queue_empty(mp_queue *q)
{
    return mp_queue_qsize(q) == 0;
}

bool mp_queue_full(mp_queue *q)
{
    if (!q)
        return false;
    const mp__ring *r = q->r;
    uint64_t h, t;
    snapshot(r, &h, &t);
    if (r->maxsize)
        return MP__IDX_NUM(t) - MP__IDX_NUM(h) >= r->maxsize;
    return r->size - (MP__IDX_POS(t) - MP__IDX_POS(h)) < MP__RING_HDR;
}

/* ---- close, JoinableQueue ------------------------------------------------------- */

static void bump_all(uint32_t *word)
{
    __atomic_fetch_add(word, 2, __ATOMIC_SEQ_CST);
    mp__futex_wake(word, INT32_MAX);
}

int mp_queue_close(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    mp__ring *r = q->r;
    mp__deadline dl = mp__deadline_from_ms(MP_FOREVER);
    int rc = side_lock(q, &r->plock, MP__RING_PRODUCER, &dl);
    if (rc < 0)
        return rc;
    uint32_t was = __atomic_exchange_n(&r->closed, 1, __ATOMIC_SEQ_CST);
    side_unlock(&r->plock);
    if (was)
        return -EPIPE;
    bump_all(&r->data_word);
    bump_all(&r->space_word);
    return 0;
}

int mp_queue_task_done(mp_queue *q)
{
    if (!q)
        return -EINVAL;
    mp__ring *r = q->r;
    uint32_t d = __atomic_load_n(&r->done, __ATOMIC_SEQ_CST);
    for (;;) {
        uint32_t puts = MP__IDX_NUM(__atomic_load_n(&r->tail, __ATOMIC_SEQ_CST));
        if (puts == d || (int32_t)(puts - d) < 0)
            return -EINVAL;
        if (__atomic_compare_exchange_n(&r->done, &d, d + 1, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            break;
    }
    if (MP__IDX_NUM(__atomic_load_n(&r->tail, __ATOMIC_SEQ_CST)) == d + 1)
        wake_word(&r->join_word);
    return 0;
}

int mp_queue_join(mp_queue *q, int timeout_ms)
{
    if (!q)
        return -EINVAL;
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    while (!join_ready(q->r)) {
        int rc = wait_for(q->r, WAIT_JOIN, 0, &dl);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- construction ------------------------------------------------------------------ */

static int handle_new(mp_queue **out, void *base, size_t map_len)
{
    mp_queue *q = malloc(sizeof *q);
    if (!q)
        return -ENOMEM;
    q->r = base;
    q->data = (unsigned char *)base + q->r->data_off;
    q->map_len = map_len;
    *out = q;
    return 0;
}

int mp_queue_new(mp_queue **out, const mp_queue_opts *opts)
{
    if (!out)
        return -EINVAL;
    uint32_t size, cap, maxsize;
    int rc = ring_geometry(opts, &size, &cap, &maxsize);
    if (rc < 0)
        return rc;
    size_t len = header_bytes() + size;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return -errno;
    rc = ring_init(base, size, cap, maxsize);
    if (rc == 0)
        rc = handle_new(out, base, len);
    if (rc < 0)
        munmap(base, len);
    return rc;
}

static int check_name(const char *name)
{
    if (!name || name[0] != '/' || name[1] == '\0' || strchr(name + 1, '/'))
        return -EINVAL;
    if (strlen(name + 1) > NAME_MAX)
        return -ENAMETOOLONG;
    return 0;
}

/* Attaches to an existing object, waiting (bounded) for its creator to size
 * and initialise it. */
static int attach(int fd, const mp_queue_opts *opts, void **base, size_t *len)
{
    int64_t give_up = mp__now_ns() + 2000000000;
    struct stat st;
    for (;;) {
        if (fstat(fd, &st) != 0)
            return -errno;
        if (st.st_size > 0)
            break;
        if (mp__now_ns() > give_up)
            return -EPROTO;
        sched_yield();
    }
    if ((size_t)st.st_size < header_bytes() + 64)
        return -EPROTO;
    *len = (size_t)st.st_size;
    void *b = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (b == MAP_FAILED)
        return -errno;
    mp__ring *r = b;
    while (__atomic_load_n(&r->magic, __ATOMIC_ACQUIRE) != MP__RING_MAGIC) {
        if (mp__now_ns() > give_up) {
            munmap(b, *len);
            return -EPROTO;
        }
        sched_yield();
    }
    if (!ring_constants_ok(r, *len)) {
        munmap(b, *len);
        return -EPROTO;
    }
    if (opts && ((opts->capacity && opts->capacity != r->capacity) ||
                 (opts->maxsize && opts->maxsize != r->maxsize))) {
        munmap(b, *len);
        return -EINVAL;
    }
    *base = b;
    return 0;
}

int mp_queue_open(mp_queue **out, const char *name, const mp_queue_opts *opts, int flags)
{
    if (!out || (flags & ~(MP_CREATE | MP_EXCL)))
        return -EINVAL;
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    uint32_t size, cap, maxsize;
    rc = ring_geometry(opts, &size, &cap, &maxsize);
    if (rc < 0)
        return rc;
    void *base = NULL;
    size_t len = header_bytes() + size;
    bool created = false;
    int fd = -1;
    if (flags & MP_CREATE) {
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            created = true;
        else if (errno != EEXIST || (flags & MP_EXCL))
            return -errno;
    }
    if (!created) {
        fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        rc = attach(fd, opts, &base, &len);
    } else {
        if (ftruncate(fd, (off_t)len) != 0) {
            rc = -errno;
        } else {
            base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            rc = base == MAP_FAILED ? -errno : ring_init(base, size, cap, maxsize);
            if (rc < 0 && base != MAP_FAILED)
                munmap(base, len);
        }
        if (rc < 0)
            shm_unlink(name);
    }
    mp__close(fd);
    if (rc == 0) {
        rc = handle_new(out, base, len);
        if (rc < 0) {
            munmap(base, len);
            if (created)
                shm_unlink(name);
        }
    }
    return rc;
}

int mp_queue_unlink(const char *name)
{
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    return shm_unlink(name) == 0 ? 0 : -errno;
}

void mp_queue_free(mp_queue *q)
{
    if (!q)
        return;
    munmap(q->r, q->map_len);
    free(q);
}
