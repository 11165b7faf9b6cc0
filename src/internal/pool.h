/* src/internal/pool.h - the pool's shared-memory layout (plain data, no
 * pointers: the creator and every worker map it at the same address, but
 * nothing relies on that).
 *
 * One MAP_SHARED anonymous mapping, made before the workers fork:
 *   [pool_hdr][pool_slot x nproc][task ring, tcap bytes][result ring x nproc, rcap each]
 *
 * Task ring: single producer (the creator), many consumers (workers) that
 * take under hdr.tlock, a robust lock.  Records are 8-aligned and never
 * wrap: a PAD record fills the end of the buffer.  Positions are 64-bit byte
 * counts that only grow; a record lives at pos % tcap.
 *
 * Result rings: one per worker, single producer (that worker), single
 * consumer (the creator); same PAD rule.  A worker writes a result record in
 * place and publishes it by moving r_tail.  The record being written (not
 * yet published) still has a valid header and element count, so after the
 * worker dies the creator can salvage the elements it finished.
 */
#ifndef MPROC_INTERNAL_POOL_H
#define MPROC_INTERNAL_POOL_H

#include <stdint.h>

#include "mproc/sync.h"

#define POOL_REC_PAD  1u /* skip to the next multiple of the ring size */
#define POOL_REC_TASK 2u
#define POOL_REC_RES  3u

/* slot.state: bits 0-1 what the worker does, bits 2-31 a sequence number
 * bumped at every take (and, with task timeouts, at every element), so the
 * creator's RUNNING -> KILLED compare-and-swap can never hit a later task.
 *   IDLE     no task (the last one's results are all published)
 *   RUNNING  running job `current`, element `elem` (within the job)
 *   KILLED   the creator decided the element ran too long and will SIGKILL
 *            the worker; the worker publishes nothing more and waits to die */
#define POOL_ST_IDLE    0u
#define POOL_ST_RUNNING 1u
#define POOL_ST_KILLED  2u
#define POOL_ST_MASK    3u

struct pool_hdr {
    /* written by the creator only */
    uint64_t t_tail;     /* end of the last published task record */
    uint32_t t_seq;      /* futex: bumped (and woken) after a push if t_waiters, and at close */
    uint32_t closed;     /* 0 open; 1 no task will ever come again: idle workers exit */
    uint64_t tcap, rcap; /* ring sizes (multiples of 8) */
    uint32_t nproc;
    uint32_t timeouts;   /* task_timeout_ms > 0: workers stamp every element */
    uint32_t test_die;   /* test hook (mp__pool_test_die_in_take), one shot */
    char pad0[64 - 44];
    /* written by workers (t_head under tlock) */
    uint64_t t_head;     /* start of the first record not yet taken */
    uint32_t t_waiters;  /* workers sleeping (or about to) on t_seq */
    uint32_t psleep;     /* 1: the creator sleeps (or is about to) on its eventfd;
                            a worker that publishes something swaps it to 0 and
                            writes the eventfd */
    char pad1[64 - 16];
    mp_lock tlock;       /* guards taking from the task ring */
};

struct pool_slot {
    uint32_t state;      /* see POOL_ST_* */
    uint32_t elem;       /* element of `current` the worker runs (or is about to) */
    uint64_t current;    /* id of the job taken last */
    int64_t started;     /* CLOCK_MONOTONIC ns when `elem` started (timeouts only) */
    uint64_t r_tail;     /* worker: end of its last published result record */
    uint32_t r_wait;     /* worker sleeps (or is about to) on r_seq for room */
    uint32_t ready;      /* 0 until the worker's initializer returned */
    char pad1[64 - 40];
    uint64_t r_head;     /* creator: start of the first record it has not consumed */
    uint32_t r_seq;      /* futex: bumped (and woken) by the creator after consuming if r_wait */
    uint32_t pad2;
    char pad3[64 - 16];
};

/* A task record; followed by count * in_size input bytes. */
struct pool_trec {
    uint32_t size;       /* whole record, multiple of 8 */
    uint32_t type;       /* POOL_REC_PAD or POOL_REC_TASK */
    uint64_t id;         /* job id, never 0 */
    uint64_t fn;         /* the mp_task, valid in the worker (same binary, forked) */
    uint32_t count;      /* elements */
    uint32_t in_size;    /* bytes per element */
    uint32_t out_cap;    /* room a task gets for its result */
    uint32_t pad;
};

/* A result record; followed by count elements, each a pool_relem and its
 * data padded to 8 bytes. */
struct pool_rrec {
    uint32_t size;       /* whole record (set when published; 0 while written) */
    uint32_t type;       /* POOL_REC_PAD or POOL_REC_RES */
    uint64_t id;         /* the job */
    uint32_t first;      /* element index within the job of the first element here */
    uint32_t count;      /* elements finished so far (stored after each element) */
};

struct pool_relem {
    uint32_t len;        /* result bytes (0 on error) */
    int32_t code;        /* 0, MP_ETASK or -EMSGSIZE */
    int32_t status;      /* the task's code (MP_ETASK) or claimed size (-EMSGSIZE) */
    uint32_t pad;
};

/* Test hook (fault injection, STYLE 4.15), copied into the next pool
 * created; the first worker to reach the point SIGKILLs itself, once:
 *   1  after claiming a task, before the ring head moves (holding the lock)
 *   2  after the head moved, before releasing the lock
 * Nothing in the library sets it. */
extern int mp__pool_test_die_in_take;

#endif
