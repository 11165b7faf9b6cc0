/* mproc/queue.h - a shared-memory message queue between processes
 * (Python's multiprocessing.Queue and JoinableQueue, without the feeder
 * thread, the pipe or the corruption when a process dies).
 *
 * Multi-producer, multi-consumer.  Messages are bytes; they are delivered in
 * the order their puts completed, so FIFO per producer.  The queue is one
 * shared mapping holding a byte ring: memory is bounded by the capacity, no
 * thread runs behind the caller's back, and a put that returned 0 is in
 * shared memory (nothing is lost when a producer exits right after it).
 *
 * Crash safety: a process SIGKILLed at any instant (inside put, get, while
 * waiting) never deadlocks or corrupts the queue for the others.  A message
 * is delivered whole or not at all; at most the message being put by the
 * dying process is lost, and a message a dying getter had not finished
 * taking stays queued for the next getter.  See mproc_queue(3).
 *
 * Thread safety: every call may be made concurrently from any number of
 * processes sharing the queue.  Within one process, concurrent calls from
 * several threads are also safe (the locks are process-shared).
 * Fork safety: a handle is inherited by fork; parent and child use the
 * same queue.  Each process frees its own handle with mp_queue_free.
 */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_queue mp_queue;

typedef struct mp_queue_opts {
    size_t maxsize;  /* most messages held at once; 0 = bounded by capacity only */
    size_t capacity; /* largest message in bytes, and the ring's minimum size:
                        the ring is the next power of two >= capacity + 8;
                        0 = MP_QUEUE_DEFAULT_CAPACITY; at most MP_QUEUE_MAX_CAPACITY */
} mp_queue_opts;

/** The capacity used when opts is NULL or opts->capacity is 0 (1 MiB). */
#define MP_QUEUE_DEFAULT_CAPACITY ((size_t)1 << 20)
/** The largest capacity (1 GiB - 8); a larger one is -EINVAL. */
#define MP_QUEUE_MAX_CAPACITY (((size_t)1 << 30) - 8)
/** The largest maxsize (2^31 - 1); a larger one is -EINVAL. */
#define MP_QUEUE_MAX_MAXSIZE (((size_t)1 << 31) - 1)

/** Creates an anonymous queue, shared with the processes forked after.
 *  Returns 0 and sets *out, or -EINVAL (bad opts), -ENOMEM, -EMFILE, ...
 *  The caller frees the handle with mp_queue_free; on failure *out is left
 *  unchanged and nothing is allocated. */
MP_API int mp_queue_new(mp_queue **out, const mp_queue_opts *opts);

/** Creates or attaches the named queue name ("/name", like shm_open).
 *  flags: MP_CREATE creates it if missing (with opts); with MP_EXCL as well,
 *  -EEXIST if it exists.  Without MP_CREATE a missing queue is -ENOENT.
 *  Attaching takes the existing queue's maxsize and capacity: a non-zero
 *  opts field that differs is -EINVAL.  -EPROTO if the object is not an
 *  mproc queue (or its creator died before finishing it).  The caller frees
 *  the handle with mp_queue_free; the name lives until mp_queue_unlink.
 *  On failure *out is unchanged and nothing is created. */
MP_API int mp_queue_open(mp_queue **out, const char *name, const mp_queue_opts *opts,
                         int flags);

/** Removes the name (the queue lives on while handles to it exist).
 *  0, -ENOENT, -EINVAL (bad name). */
MP_API int mp_queue_unlink(const char *name);

/** Copies len bytes of msg into the queue (msg may be NULL if len is 0).
 *  Blocks while the queue is full (maxsize messages, or not enough free
 *  bytes in the ring).  0; -EAGAIN (timeout 0) or -ETIMEDOUT when still
 *  full; -EPIPE once the queue is closed; -EMSGSIZE if len > capacity (at
 *  once, never a hang); -EINTR (a signal handler asked to interrupt);
 *  -EINVAL for NULL.  The caller keeps msg; on failure nothing is queued. */
MP_API int mp_queue_put(mp_queue *q, const void *msg, size_t len, int timeout_ms);

/** Takes the next message and copies it into buf (cap bytes).  0 and *len =
 *  its size; -EMSGSIZE if cap is too small: the message stays queued and
 *  *len is its size; -EAGAIN/-ETIMEDOUT while empty; MP_EOF once the queue is
 *  closed and drained; -EINTR; -EINVAL for NULL.  Never allocates. */
MP_API int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, int timeout_ms);

/** As mp_queue_get, but allocates the message: *msg (caller free()s it; a
 *  zero-length message still gets a non-NULL 1-byte allocation) and *len.
 *  -ENOMEM leaves the message queued.  On failure *msg is unchanged. */
MP_API int mp_queue_get_alloc(mp_queue *q, void **msg, size_t *len, int timeout_ms);

/** The number of messages queued, exact at one instant during the call
 *  (0 for NULL).  Never blocks on a lock. */
MP_API size_t mp_queue_qsize(mp_queue *q);
/** qsize == 0. */
MP_API bool mp_queue_empty(mp_queue *q);
/** True when a put would block now: maxsize messages are queued, or (with
 *  maxsize 0) the ring has no room even for an empty message. */
MP_API bool mp_queue_full(mp_queue *q);

/** Closes the queue for every process (Go-channel style): later puts get
 *  -EPIPE, getters drain what is queued and then get MP_EOF, and every
 *  blocked put/get wakes at once.  0; -EPIPE if it was already closed;
 *  -EINVAL for NULL.  Does not free the handle. */
MP_API int mp_queue_close(mp_queue *q);

/** JoinableQueue: marks one message taken by get as processed.  0; -EINVAL
 *  if called more often than messages were put (or for NULL). */
MP_API int mp_queue_task_done(mp_queue *q);

/** Blocks until every message ever put got its task_done.  0;
 *  -EAGAIN/-ETIMEDOUT; -EINTR; -EINVAL for NULL. */
MP_API int mp_queue_join(mp_queue *q, int timeout_ms);

/** Releases this process's handle (unmaps the queue here); other processes
 *  keep using it.  Accepts NULL.  The handle must not be in use by another
 *  thread of this process. */
MP_API void mp_queue_free(mp_queue *q);

#ifdef __cplusplus
}
#endif

#endif
