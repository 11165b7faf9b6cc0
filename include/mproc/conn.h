/* mproc/conn.h - Pipe and connections: framed messages between related
 * processes (Python's multiprocessing.Pipe and Connection).
 *
 * mp_pipe() makes two connected handles.  Each message arrives whole, in
 * the order one sender sent it; messages may have any size (zero bytes to
 * hundreds of MiB).  Handles are inherited across fork: create the pipe, then
 * start the processes that use it, and close in every process the ends it
 * does not use, or it will never see MP_EOF.
 *
 * Guarantees:
 *  - No SIGPIPE: sending to a closed peer returns -EPIPE; the caller's
 *    SIGPIPE disposition and signal mask are left as they were.
 *  - No torn message is ever reported as success: a message whose sender
 *    died half-way through it is reported as -EBADMSG (or -ECONNRESET when
 *    the sending end is gone altogether), and the stream goes on with the
 *    next whole message.
 *  - Sends from several processes on the same end never interleave.
 *
 * Thread safety: a handle is used by one thread at a time (like a FILE*
 * without locking); different handles are independent.  The same holds for
 * mp_signal_on() handlers: one that runs inside a blocking call on a handle
 * must not use that handle (it may use any other).  Fork safety: handles
 * are meant to be inherited; after fork both processes own a copy and each
 * closes its own with mp_conn_close().  A receive state (a message that a
 * call left half-read, see mp_conn_recv) is per handle and per process:
 * do not fork while one is pending.
 *
 * Full reference: mproc_conn(3).
 */
#ifndef MPROC_CONN_H
#define MPROC_CONN_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A connection end.  Opaque; owned by the process that holds it. */
typedef struct mp_conn mp_conn;

/** Creates a connected pair.  duplex=true: both ends send and receive.
 *  duplex=false: *a only receives and *b only sends (the other direction
 *  returns -EBADF).  Allocates both handles (freed by mp_conn_close);
 *  on failure nothing is allocated, *a and *b are left unchanged and the
 *  code is -EINVAL (NULL pointer), -EMFILE/-ENFILE or -ENOMEM.
 *  Thread-safe. */
MP_API int mp_pipe(mp_conn **a, mp_conn **b, bool duplex);

/** Sends one message of len bytes (0 is valid).  Blocks while the peer's
 *  buffers are full (signal handlers still run; -EINTR if one asks).
 *  Returns 0 once the whole message is queued; -EPIPE if every copy of the
 *  peer's end is closed; -EBADF on a receive-only end; -EINVAL if msg is
 *  NULL with len > 0; -EMSGSIZE if len exceeds SSIZE_MAX.  Copies msg before
 *  returning; never takes ownership.  Safe to call from several processes
 *  on copies of the same end: messages never interleave. */
MP_API int mp_conn_send(mp_conn *c, const void *msg, size_t len);

/** Receives the next message into buf (cap bytes) and sets *len to its size.
 *  Returns 0; MP_EOF once every copy of the peer's end is closed and every
 *  message was read; -EAGAIN (timeout 0) or -ETIMEDOUT; -EINTR;
 *  -EMSGSIZE if cap is too small: the message is kept and *len says its
 *  size; -EBADMSG if the message was torn (its sender died while sending it:
 *  the message is dropped, the next call goes on with the next one; noticed
 *  within ~100 ms even while other processes keep the sending end open);
 *  -ECONNRESET if the peer's end was closed in the middle of a message;
 *  -EPROTO if the next item is a file descriptor (use mp_conn_recv_fd) or
 *  the stream is corrupted; -EBADF on a send-only end; -EINVAL on NULL.
 *  The contents of buf are unspecified after an error.  The timeout bounds
 *  the time spent waiting for data, not copying it: a message that keeps
 *  streaming in is received to its end.  A call that expires or is
 *  interrupted after part of a large message arrived keeps that part in the
 *  handle (allocated there) and the next call resumes it.  Never allocates
 *  memory that the caller must free. */
MP_API int mp_conn_recv(mp_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms);

/** As mp_conn_recv, but allocates the message: on 0, *msg is a malloc()ed
 *  buffer of *len bytes (at least 1 byte allocated, even for an empty
 *  message) that the caller free()s.  On error *msg and *len are unchanged
 *  and nothing is allocated.  -ENOMEM keeps the message. */
MP_API int mp_conn_recv_alloc(mp_conn *c, void **msg, size_t *len, int timeout_ms);

/** Waits until a message (or MP_EOF) is ready: mp_conn_recv will not block.
 *  Returns 1 when ready, 0 when the timeout expired (timeout 0 = check
 *  only), -EINTR, -EBADF on a send-only end.  Never consumes or allocates
 *  anything.
 *  One exception: a message larger than the socket could hold when it was
 *  sent (MiBs) is announced once it starts, and a receive then waits for its
 *  rest as it streams in. */
MP_API int mp_conn_poll(mp_conn *c, int timeout_ms);

/** Sends a duplicate of the open file descriptor fd (SCM_RIGHTS), ordered
 *  with the messages.  The caller keeps fd.  Duplex connections only:
 *  -ENOTSUP on a simplex one.  -EBADF if fd is not open; -EPIPE as send. */
MP_API int mp_conn_send_fd(mp_conn *c, int fd);

/** Receives a file descriptor sent with mp_conn_send_fd: on 0, *fd is a new
 *  descriptor (close-on-exec) the caller owns.  -EPROTO (nothing consumed)
 *  if the next item is a message; -EMFILE if this process had no free
 *  descriptor for it (RLIMIT_NOFILE): the descriptor is lost and the next
 *  call goes on with the next item; the other codes as mp_conn_recv.
 *  Duplex connections only: -ENOTSUP on a simplex one. */
MP_API int mp_conn_recv_fd(mp_conn *c, int *fd, int timeout_ms);

/** The descriptor to poll(2)/epoll(7) together with other connections and
 *  process sentinels: it is readable when a message or MP_EOF is waiting
 *  (Python's multiprocessing.connection.wait).  For a send-only end, the
 *  descriptor that polls writable when a small message can be sent.  Owned
 *  by the handle: do not read, write or close it.  -EINVAL on NULL. */
MP_API int mp_conn_fileno(const mp_conn *c);

/** Closes this process's handle and frees it; other processes' copies stay
 *  open.  NULL is a no-op.  The handle must not be used afterwards (as after
 *  free()).  A half-read message kept in the handle is dropped. */
MP_API void mp_conn_close(mp_conn *c);

#ifdef __cplusplus
}
#endif

#endif
