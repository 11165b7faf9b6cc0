/* mproc/error.h - every error code mproc returns, from one table.
 *
 * MP_ERRNO_MAP lists each code once with its name and message; the MP_E*
 * constants, mp_strerror() and mp_err_name() are generated from it, and a
 * test walks it.  Codes are negative: -errno values for system errors and
 * three library codes below -4095 that no errno can take.
 */
#ifndef MPROC_ERROR_H
#define MPROC_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library's own codes: X(NAME, value, message). */
#define MP_OWN_ERROR_MAP(X)                                                   \
    X(MP_EOF, -4096, "end of stream: the peer closed and everything was read") \
    X(MP_ETASK, -4097, "the task returned a non-zero code")                   \
    X(MP_EWORKER, -4098, "the worker process running the task died")

/* The errno values mproc functions return, with what they mean in mproc:
 * X(NAME, errno, message).  mp_strerror() also names any other -errno. */
#define MP_ERRNO_MAP(X)                                                              \
    X(EPERM, EPERM, "operation not permitted (the caller does not hold the lock)")  \
    X(ENOENT, ENOENT, "no object with that name")                                  \
    X(ESRCH, ESRCH, "no such process (it has already been reaped)")                \
    X(EINTR, EINTR, "interrupted: a signal handler asked to stop waiting")         \
    X(EIO, EIO, "input/output error")                                               \
    X(EBADF, EBADF, "bad file descriptor or handle already closed")                 \
    X(ECHILD, ECHILD, "no such child process")                                      \
    X(EAGAIN, EAGAIN, "would block, and the timeout was 0")                         \
    X(ENOMEM, ENOMEM, "out of memory")                                              \
    X(EACCES, EACCES, "permission denied")                                          \
    X(EFAULT, EFAULT, "bad address")                                                \
    X(EBUSY, EBUSY, "resource busy")                                                \
    X(EEXIST, EEXIST, "an object with that name already exists")                    \
    X(EINVAL, EINVAL, "invalid argument")                                           \
    X(ENFILE, ENFILE, "too many open files in the system")                          \
    X(EMFILE, EMFILE, "too many open files in this process")                        \
    X(ENOSPC, ENOSPC, "no space left")                                              \
    X(EPIPE, EPIPE, "the other end is closed")                                      \
    X(ERANGE, ERANGE, "value out of range")                                         \
    X(ENAMETOOLONG, ENAMETOOLONG, "name too long")                                  \
    X(ETIME, ETIME, "the task ran past its time limit")                             \
    X(EOVERFLOW, EOVERFLOW, "value would exceed its maximum")                       \
    X(EMSGSIZE, EMSGSIZE, "message too long for the buffer or the queue")           \
    X(ENOTSUP, ENOTSUP, "operation not supported")                                  \
    X(ETIMEDOUT, ETIMEDOUT, "timed out")                                            \
    X(ECANCELED, ECANCELED, "canceled")                                             \
    X(EOWNERDEAD, EOWNERDEAD, "acquired, but the previous owner died holding it")   \
    X(ENOTRECOVERABLE, ENOTRECOVERABLE, "state not recoverable")                  \
    X(EDEADLK, EDEADLK, "would deadlock: the caller already holds it")              \
    X(EBADMSG, EBADMSG, "corrupted message: a sender died while writing it")        \
    X(EPROTO, EPROTO, "protocol error: the stream is no longer in sync")            \
    X(ECONNRESET, ECONNRESET, "connection reset by the peer")

enum {
#define MP__ERR_ENUM(name, value, msg) name = (value),
    MP_OWN_ERROR_MAP(MP__ERR_ENUM)
#undef MP__ERR_ENUM
};

#ifdef __cplusplus
}
#endif

#endif
