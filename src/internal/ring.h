/* src/internal/ring.h - the queue's shared ring: layout, word states and
 * the commit protocol that makes it survive SIGKILL.
 *
 * ---- Layout ------------------------------------------------------------
 * One shared mapping (MAP_SHARED|MAP_ANONYMOUS for mp_queue_new, a POSIX
 * shm object for mp_queue_open): the header page (struct mp__ring below)
 * followed by the data area of `size` bytes, a power of two.  The header is
 * plain data (no pointers), so it works at any address in any process.
 * Each group of hot fields has its own cache line, so the producer side and
 * the consumer side never write to the same line:
 *
 *   line 0  constants (magic, size, capacity, maxsize) + closed flag
 *   line 1  plock (producers' robust lock) + head_cache + pcpu  producers only
 *   line 2  tail                       written by producers, read by consumers
 *   line 3  clock (consumers' robust lock) + tail_cache + ccpu  consumers only
 *   line 4  head                       written by consumers, read by producers
 *   line 5  data_word   (consumers sleep on it)
 *   line 6  space_word  (producers sleep on it)
 *   line 7  done + join_word (JoinableQueue)
 *
 * ---- Records -------------------------------------------------------------
 * A message is one record at an 8-byte aligned position: an 8-byte header
 * { uint32 len; uint32 num } then len payload bytes, padded to 8.  `num` is
 * the message's sequence number (the count of messages put before it, mod
 * 2^32), which lets a checker verify the chain.  The header never wraps
 * (positions are multiples of 8, size is a multiple of 8); the payload may
 * wrap at the end of the data area and is then copied in two pieces.
 *
 * ---- Index words -----------------------------------------------------------
 * tail and head are 64-bit words packing { pos: low 32 bits, num: high 32
 * bits }: pos is a byte position that only grows (mod 2^32; the data offset
 * is pos & (size - 1)), num counts messages (mod 2^32).  Because position and
 * message count move together in ONE atomic store, there is no instant at
 * which they disagree, whatever process is killed when:
 *   tail = end of the last published record; num = messages ever put.
 *   head = start of the oldest unconsumed record; num = messages ever taken.
 *   Invariants: 0 <= tail.pos - head.pos <= size;
 *               tail.num - head.num = messages queued (<= maxsize if set).
 * head_cache (producers' last read of head) and tail_cache (consumers' last
 * read of tail) are past values of head and tail: head_cache <= head and
 * head <= tail_cache <= tail.  They live in shared memory under their side's
 * lock, so a cache can never be more than one ring behind (each put checks
 * space against it, and reloads when it says "full").
 *
 * ---- Commit protocol (what is published when) ---------------------------
 * put, holding plock:
 *   1. closed set?  -> -EPIPE.
 *   2. room for the record between tail and head_cache + size (reload head
 *      if not) and below maxsize?  Otherwise release plock and wait.
 *   3. write header and payload into the free space after tail;
 *   4. COMMIT: store tail = { pos + record size, num + 1 } (seq_cst).
 *   A producer killed before 4 has written only free space: its record is
 *   lost, nothing else changes, and the next producer overwrites it.
 *   Killed after 4: the message is queued whole.
 * get, holding clock:
 *   1. the record at head (reload tail_cache if it says empty); validate
 *      its header (num == head.num, len <= capacity, fits before tail);
 *   2. copy the payload out (or -EMSGSIZE: nothing changes);
 *   3. COMMIT: store head = { pos + record size, num + 1 } (seq_cst).
 *   A consumer killed before 3 took nothing: the message stays for the next
 *   getter (it was never delivered: the process that copied it is dead).
 *   Killed after 3: the message counts as delivered to the dead process.
 * There is no batching of the commits: each get publishes head and each put
 * publishes tail, so a delivered message is never delivered twice and qsize
 * is exact.  A process killed while holding plock or clock makes the next
 * acquirer get -EOWNERDEAD from mp_lock; it then runs mp__ring_repair for its
 * side, which resets that side's cache and validates the records between
 * head and tail (truncating the ring at the first bad record, which the
 * protocol above never produces: only a stray write into the mapping can).
 *
 * ---- Sleeping -----------------------------------------------------------------
 * data_word / space_word / join_word: bit 0 = "someone may sleep on me",
 * bits 1..31 a sequence that changes at every wake-up.  A waiter:
 *   w = load; set bit 0 with CAS (seq_cst; retry from the top if w moved);
 *   re-check its condition (seq_cst loads of head/tail/closed); if still
 *   not met, futex-wait while the word == w | 1.
 * A waker, after its commit (a seq_cst store):
 *   v = load (seq_cst); if bit 0 is set: CAS v -> v + 1 (clears it, bumps the
 *   sequence) and FUTEX_WAKE all.
 * The seq_cst commit and load against the waiter's seq_cst CAS and re-check
 * are Dekker's pattern: either the waker sees the bit or the waiter sees the
 * commit, so no wake-up is lost and an idle put/get makes no syscall.  A
 * waiter killed asleep leaves bit 0 set: it costs the next waker one
 * needless FUTEX_WAKE, which clears it (self-healing, unlike a waiter count).
 * close stores closed = 1 under plock, then bumps every word by 2 and wakes
 * all; every waiter re-checks closed before sleeping.
 * Before the CAS, a waiter may spin (up to mp__queue_spin_ns) re-checking
 * its condition, but only if the peer side last ran on another CPU (pcpu /
 * ccpu: 1 + the CPU of the last put / get, rewritten only when it changes),
 * or, before any hint exists, if this process may run on several CPUs.
 * Polls back off exponentially (up to mp__queue_spin_backoff pauses) so the
 * other side's index line does not bounce at every commit.  A consumer whose
 * spin sees data lags mp__queue_spin_lag_ns (300 ns) behind the producer
 * before taking it, and a producer spinning on a full ring waits for a
 * quarter of it to drain: neither then reads or writes the cache lines the
 * other is still using (bench_queue: 4 KiB 1->1 went from ~2.1M to ~4.6M
 * messages/s; the cross-CPU round trip from ~0.4 us to ~2 us).
 * A process killed between its commit and its wake-up cannot wake anyone:
 * sleepers therefore sleep at most MP_SYNC_RESCUE_MS (200 ms) at a time and
 * re-check, so such a death delays them by at most that, never for good.
 *
 * ---- JoinableQueue -------------------------------------------------------------
 * done counts task_done calls (mod 2^32); unfinished = tail.num - done, so
 * put needs no second store (a producer killed between two stores could
 * otherwise leave join waiting forever).  task_done is one CAS on done.
 *
 * ---- Lock order ------------------------------------------------------------------
 * put and close take plock; get takes clock; no call holds both.
 */
#ifndef MPROC_INTERNAL_RING_H
#define MPROC_INTERNAL_RING_H

#include <stdint.h>

#include "internal/core.h"
#include "mproc/sync.h"

#define MP__RING_MAGIC   0x7571706du /* "mpqu", stored last at creation */
#define MP__RING_VERSION 1u
#define MP__RING_HDR     8u          /* record header bytes */
#define MP__RING_ALIGN   8u

#define MP__IDX_POS(w) ((uint32_t)(w))
#define MP__IDX_NUM(w) ((uint32_t)((w) >> 32))
#define MP__IDX(pos, num) (((uint64_t)(uint32_t)(num) << 32) | (uint32_t)(pos))

typedef struct mp__ring {
    /* line 0: written once at creation (magic last), then read-only except
     * closed: 0 open, 1 closed (stored under plock, never reset). */
    _Alignas(MP__CACHELINE) uint32_t magic;
    uint32_t version;
    uint32_t size;      /* data bytes, a power of two >= capacity + 8 */
    uint32_t capacity;  /* largest payload accepted */
    uint32_t maxsize;   /* 0 = no message limit */
    uint32_t data_off;  /* data area offset from the start of the mapping */
    uint32_t closed;
    uint32_t reserved0[9];
    /* line 1: producers only */
    _Alignas(MP__CACHELINE) mp_lock plock;
    uint64_t head_cache; /* a past head, see above */
    uint32_t pcpu;       /* 1 + the CPU of the last put (0 = none yet): a hint */
    /* line 2 */
    _Alignas(MP__CACHELINE) uint64_t tail;
    /* line 3: consumers only */
    _Alignas(MP__CACHELINE) mp_lock clock;
    uint64_t tail_cache; /* a past tail >= head */
    uint32_t ccpu;       /* 1 + the CPU of the last get (0 = none yet): a hint */
    /* line 4 */
    _Alignas(MP__CACHELINE) uint64_t head;
    /* lines 5-7: futex words, see "Sleeping" */
    _Alignas(MP__CACHELINE) uint32_t data_word;
    _Alignas(MP__CACHELINE) uint32_t space_word;
    _Alignas(MP__CACHELINE) uint32_t done;
    uint32_t join_word;
    uint32_t reserved1[6];
} mp__ring;

/* Which side's invariants to repair. */
enum { MP__RING_PRODUCER = 1, MP__RING_CONSUMER = 2 };

/* Validates the ring from a snapshot: constants, index invariants, caches,
 * and the record chain from head to tail.  0 or -EPROTO.  The caller holds
 * plock or clock (so the records between head and tail cannot change).
 * Callable by tests. */
int mp__ring_check(const mp__ring *r, const unsigned char *data);

/* Called by the holder of the side's lock after -EOWNERDEAD (or by tests):
 * resets the side's cache to the live index and, for the producer side,
 * truncates the ring at the first invalid record.  Returns the number of
 * queued messages it dropped (0 unless the ring was corrupted by a stray
 * write), or -EPROTO if the constants themselves are damaged. */
int mp__ring_repair(mp__ring *r, unsigned char *data, int side);

/* Spin budget in ns before a wait sleeps, when this process may run on more
 * than one CPU (0 disables spinning).  A knob for the benchmarks. */
extern int64_t mp__queue_spin_ns;
/* Most pause instructions between two polls while spinning (the gap doubles
 * from 1): polling the other side's index less often keeps its cache line
 * from bouncing at every commit.  A knob for the benchmarks. */
extern unsigned mp__queue_spin_backoff;
/* How long a consumer that caught up while spinning lets the producer get
 * ahead before taking the message (0: take it at once).  A benchmark knob. */
extern int64_t mp__queue_spin_lag_ns;

/* Test hooks: the ring and data area behind a handle. */
struct mp_queue;
mp__ring *mp__queue_ring(struct mp_queue *q);
unsigned char *mp__queue_data(struct mp_queue *q);

#endif
