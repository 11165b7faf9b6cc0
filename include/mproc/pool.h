/* mproc/pool.h - a pool of worker processes (Python's multiprocessing.Pool).
 *
 *   static int square(const void *in, size_t in_len, void *out, size_t *out_len)
 *   {
 *       int x = *(const int *)in;
 *       *(int *)out = x * x;
 *       *out_len = sizeof(int);
 *       return 0;
 *   }
 *
 *   mp_pool *p;
 *   mp_pool_new(&p, &(mp_pool_opts){ .processes = 4 });
 *   int in[6] = { 1, 2, 3, 4, 5, 6 }, out[6];
 *   mp_pool_map(p, square, in, sizeof(int), 6, out, sizeof(int), 0);
 *   mp_pool_close(p);
 *   mp_pool_join(p);
 *   mp_pool_free(p);
 *
 * Tasks run in forked workers.  Workers are forked from the process that
 * created the pool (at mp_pool_new, and again whenever one is replaced), so
 * they run the same binary and a task is passed as a plain function pointer;
 * a worker sees the creator's memory as it was at that worker's fork, never
 * later changes.  A task's input is copied to the worker and its result
 * copied back: pass data, not pointers into the caller's memory.
 *
 * Workers are daemonic: they die with the pool's creator even if it is
 * SIGKILLed (PR_SET_PDEATHSIG; the signal comes when the *thread* that
 * created the pool exits).  A worker that dies while running a task (a
 * segfault, SIGKILL, exit()) fails only that task, with MP_EWORKER, and is
 * replaced; so is a worker whose task runs past task_timeout_ms (the task
 * gets -ETIME).
 *
 * No hidden threads: the pool moves tasks and results only inside its own
 * calls (apply, apply_async when the task queue is full, the result, map and
 * iterator calls, join).  Submitting any number of tasks before the first
 * get never deadlocks: a submitter that finds the shared task queue full
 * collects finished results into the caller's memory while it waits.
 *
 * Thread-safety: a pool and its results and iterators are used by one
 * thread at a time (the caller serialises); different pools are
 * independent.  Fork-safety: only the process that created the pool may
 * use it; in any other process (a fork of the creator, a worker) every call
 * returns -ECHILD, and mp_pool_free() only releases that process's memory.
 */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_pool mp_pool;
typedef struct mp_result mp_result;
typedef struct mp_iter mp_iter;

/** A task: reads in_len bytes at in, writes its result to out, which has
 *  room for *out_len bytes, and sets *out_len to what it wrote.  Returns 0,
 *  or a non-zero code that the caller sees as MP_ETASK (mp_result_status()
 *  gives the code).  Setting *out_len above the room it was given fails the
 *  task with -EMSGSIZE. */
typedef int (*mp_task)(const void *in, size_t in_len, void *out, size_t *out_len);

/** Largest input one task may take (apply's in_len, map's in_size). */
#define MP_POOL_MAX_INPUT ((size_t)512 * 1024 - 64)
/** Default and largest max_result. */
#define MP_POOL_DEFAULT_RESULT ((size_t)64 * 1024)
#define MP_POOL_MAX_RESULT ((size_t)64 * 1024 * 1024)

typedef struct mp_pool_opts {
    int processes;                 /* 0 = online CPUs; at most 1024 */
    void (*initializer)(void *arg); /* run once in each worker before its first task */
    void *initarg;
    int maxtasksperchild;          /* 0 = unlimited; a worker exits after this many
                                      tasks (a map chunk counts as one) and is replaced */
    size_t max_result;             /* largest result a task may write; 0 =
                                      MP_POOL_DEFAULT_RESULT; at most MP_POOL_MAX_RESULT */
    int task_timeout_ms;           /* 0 = none; a task (one element of a map chunk)
                                      running longer: worker killed and replaced,
                                      the task gets -ETIME */
} mp_pool_opts;

/** Creates a pool and starts its workers (stdout/stderr are flushed first).
 *  opts may be NULL (defaults).  On success *out owns the pool, released
 *  with mp_pool_free(); on failure *out is unchanged and no worker remains.
 *  -EINVAL (out NULL, a negative or too large option), -ENOMEM, -EMFILE,
 *  -EAGAIN (fork), a worker's start error. */
MP_API int mp_pool_new(mp_pool **out, const mp_pool_opts *opts);

/** Runs fn(in) in a worker and waits for it: apply_async + get + free.
 *  *out_len is the capacity of out in, the result's size out.  Returns 0 or
 *  any code of mp_result_get() (on -EMSGSIZE *out_len is the size needed,
 *  and the result is gone).  Allocates nothing the caller frees. */
MP_API int mp_pool_apply(mp_pool *p, mp_task fn, const void *in, size_t in_len, void *out,
                         size_t *out_len);

/** Queues fn(in) and returns at once with *out a new result handle, freed
 *  with mp_result_free().  in is copied before this returns (in may be NULL
 *  when in_len is 0).  Waits only if the shared task queue is full, and
 *  then collects finished results while it waits (it never deadlocks).  On
 *  failure *out is unchanged and nothing is queued.  -EINVAL (NULL p, fn,
 *  out, or in with in_len > 0), -EMSGSIZE (in_len > MP_POOL_MAX_INPUT),
 *  -EPIPE (the pool was closed or terminated), -ECHILD (not the creator),
 *  MP_EWORKER (the workers keep dying in the initializer: after three in a
 *  row the pool replaces them no more), -ENOMEM, -EINTR (a signal handler
 *  asked to interrupt the wait). */
MP_API int mp_pool_apply_async(mp_pool *p, mp_task fn, const void *in, size_t in_len,
                               mp_result **out);

/** Waits until the result is ready (whatever its outcome), collecting
 *  results meanwhile.  0 once ready; -EAGAIN (timeout 0) / -ETIMEDOUT;
 *  -EINTR; -EINVAL (NULL); -ECHILD.  Allocates nothing the caller frees;
 *  the result is unchanged by a failed wait. */
MP_API int mp_result_wait(mp_result *r, int timeout_ms);

/** true once the result is ready (collects finished results, never
 *  waits); false for NULL.  Allocates nothing the caller frees. */
MP_API bool mp_result_ready(mp_result *r);

/** Waits up to timeout_ms for the result, then copies it to out.
 *  *out_len: capacity in, result size out (out_len NULL: only the outcome).
 *  0; -EAGAIN/-ETIMEDOUT (not ready yet); -EMSGSIZE with *out_len > the
 *  capacity given: buffer too small, *out_len is the size needed and the
 *  result is kept; MP_ETASK (the task returned non-zero, see
 *  mp_result_status); MP_EWORKER (its worker died); -ETIME (it ran past
 *  task_timeout_ms); -ECANCELED (the pool was terminated first); -EMSGSIZE
 *  with *out_len = 0: the task's result was larger than max_result (status:
 *  the size it claimed).  The result stays readable until freed: get may be
 *  called again.  -EINVAL (r NULL, out NULL with a non-zero capacity). */
MP_API int mp_result_get(mp_result *r, void *out, size_t *out_len, int timeout_ms);

/** Never fails; 0 for NULL or a pending result.  After MP_ETASK the task's return code; after MP_EWORKER the signal that
 *  killed the worker (0 if it exited instead, e.g. the task called exit());
 *  after a too-large result the size the task claimed; else 0. */
MP_API int mp_result_status(const mp_result *r);

/** Frees a result handle; NULL is ignored.  May be called at any time: a
 *  pending result is discarded when it arrives.  A result may outlive its
 *  pool (it then reports -ECANCELED if it never finished). */
MP_API void mp_result_free(mp_result *r);

/** Applies fn to n elements: element i is in[i*in_size .. +in_size), its
 *  result goes to out[i*out_size .. +out_size) (bytes a task leaves
 *  unwritten, and every byte of a failed element, are zero).  Each task gets
 *  room for min(out_size, max_result) bytes.  Blocks until every element is
 *  done.  Returns 0 or the first error in input order (the codes of
 *  mp_result_get); every other element is still computed.  chunksize 0 is
 *  automatic: ceil(n / (4 * processes)), as Python, capped so one chunk's
 *  input fits a quarter of the task queue; tiny tasks then cost a few tens
 *  of nanoseconds each.  out is written only inside this call.  -EINVAL
 *  (NULL p or fn, in or out NULL with a non-zero size), -EMSGSIZE (in_size >
 *  MP_POOL_MAX_INPUT), -EPIPE (closed), -ECHILD, -ENOMEM, -EINTR (then some
 *  elements may be left unwritten; the pool discards their results).
 *  Allocates nothing the caller frees; in is only read. */
MP_API int mp_pool_map(mp_pool *p, mp_task fn, const void *in, size_t in_size, size_t n,
                       void *out, size_t out_size, size_t chunksize);

/** Starts fn over n elements as map does, and returns at once with an
 *  iterator over the results: in input order (ordered) or as they finish
 *  (ordered = false: Python's imap_unordered).  Tasks are fed to the workers
 *  lazily, inside pool calls, so in must stay valid and unchanged until the
 *  iterator has returned MP_EOF or is freed.  chunksize 0 as map.  On
 *  success *out owns the iterator, freed with mp_iter_free(); on failure
 *  *out is unchanged.  Errors as map. */
MP_API int mp_pool_imap(mp_pool *p, mp_task fn, const void *in, size_t in_size, size_t n,
                        size_t chunksize, bool ordered, mp_iter **out);

/** The next result: sets *index to its element index and copies it to out
 *  (*out_len capacity in, size out).  0; the element's error code (the
 *  element is consumed, like a Python imap raising at that position);
 *  -EMSGSIZE with *out_len > capacity: buffer too small, element kept;
 *  MP_EOF after the last element; -EAGAIN/-ETIMEDOUT; -EINTR; -EINVAL.
 *  Copies into the caller's buffer; allocates nothing the caller frees. */
MP_API int mp_iter_next(mp_iter *it, size_t *index, void *out, size_t *out_len,
                        int timeout_ms);

/** Frees the iterator; NULL is ignored.  Elements not fed yet are dropped;
 *  results of running ones are discarded when they arrive. */
MP_API void mp_iter_free(mp_iter *it);

/** No more tasks: later submissions return -EPIPE.  Queued tasks still
 *  run (and imap elements not fed yet are still fed).  Idempotent.  0;
 *  -EINVAL (NULL); -ECHILD.  Frees nothing. */
MP_API int mp_pool_close(mp_pool *p);

/** After close (or terminate): waits until every task is done and every
 *  worker has exited, and reaps them all.  0 (also on later calls);
 *  -EINVAL (NULL, or the pool is still open); -EINTR (call again to go
 *  on); -ECHILD.  Results stay with the caller; the pool is freed only by
 *  mp_pool_free(). */
MP_API int mp_pool_join(mp_pool *p);

/** Stops now: kills every worker (SIGKILL) and reaps it; every queued or
 *  running task gets -ECANCELED (a result that finished before keeps its
 *  value).  Idempotent.  0; -EINVAL (NULL); -ECHILD.  Results stay with the
 *  caller; the pool is freed only by mp_pool_free(). */
MP_API int mp_pool_terminate(mp_pool *p);

/** Terminates the pool if still running and frees it; NULL is ignored.
 *  Results and iterators not freed yet stay valid (they report -ECANCELED
 *  for what never finished) and must still be freed. */
MP_API void mp_pool_free(mp_pool *p);

#ifdef __cplusplus
}
#endif

#endif
