/* mproc/shm.h - shared memory: anonymous blocks inherited by children, and
 * named segments any process can attach (Python's Value/Array and
 * shared_memory.SharedMemory).
 *
 * Anonymous memory (mp_shm_alloc) is shared with the children started after
 * the allocation, through fork; each process has its own mapping and frees
 * it on its own (mp_shm_free, or at exit); the memory goes away with the last
 * mapping.  Place mp_lock & co. (mproc/sync.h) in it; C11 atomics
 * (<stdatomic.h>, __atomic builtins) work on it across processes.
 *
 * Named segments (mp_shm_open) live in the kernel (tmpfs, /dev/shm) under a
 * name like "/name", independent of any process: they persist until
 * mp_shm_unlink(name), even after every process closed them or crashed.
 * Ownership is by convention, as in Python: the process that creates a
 * segment unlinks it when the application is done with it; every process
 * (creator included) mp_shm_close()s its handle.  After a crash the segment
 * and its contents remain: the next mp_shm_open with MP_CREATE attaches to
 * it, with MP_CREATE | MP_EXCL fails with -EEXIST; mp_shm_unlink (or
 * removing /dev/shm/name) disposes of it.  Unlinking while processes have it
 * open only removes the name: their mappings stay valid until closed.
 *
 * Thread-safety: every function is thread-safe.  Fork-safety: a child
 * inherits every mapping; a handle from mp_shm_open is usable in the child
 * and must be closed there too (closing only unmaps that process's copy).
 */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** size zeroed bytes of memory shared with children started afterwards,
 *  64-byte aligned (a page plus a 64-byte header is mapped).  Returns NULL
 *  and sets errno (EINVAL for size 0, ENOMEM) on failure.  The caller frees
 *  it with mp_shm_free; a child's copy is freed by the child. */
MP_API void *mp_shm_alloc(size_t size);

/** Unmaps a block from mp_shm_alloc in the calling process only.  NULL is
 *  accepted; a pointer mp_shm_alloc did not return is ignored when that can
 *  be told (its header does not match), and freeing twice is undefined, as
 *  with free(). */
MP_API void mp_shm_free(void *p);

/** One zeroed T in shared memory (Python's Value). */
#define MP_SHM_NEW(T) ((T *)mp_shm_alloc(sizeof(T)))
/** n zeroed objects of size bytes: as mp_shm_alloc(n * size), but NULL with
 *  errno ENOMEM when the product overflows (EINVAL when it is 0). */
MP_API void *mp_shm_calloc(size_t n, size_t size);

/** n zeroed T in shared memory (Python's Array); overflow-checked. */
#define MP_SHM_ARRAY(T, n) ((T *)mp_shm_calloc((n), sizeof(T)))

/** A named segment (shared_memory.SharedMemory). */
typedef struct mp_shm mp_shm;

/** Opens the segment name ("/name": a leading '/', no other, then at most
 *  255 bytes) and maps it.  flags: 0 attaches to an existing segment (-ENOENT
 *  if none); MP_CREATE creates it if missing; MP_CREATE | MP_EXCL fails with
 *  -EEXIST if it exists.  size: of a new segment (> 0, zeroed); when
 *  attaching, 0 takes the existing size and a larger size than the existing
 *  one is -EINVAL.  A segment is created whole: nobody ever attaches to a
 *  half-sized one.  Other errors: -EINVAL (bad name, flags or size),
 *  -ENAMETOOLONG, -EACCES, -ENOMEM, -EMFILE.  On success *out is a handle
 *  the caller closes with mp_shm_close; on failure *out is unchanged and no
 *  segment was created. */
MP_API int mp_shm_open(mp_shm **out, const char *name, size_t size, int flags);

/** The mapped bytes (page aligned), valid until mp_shm_close.  NULL for NULL. */
MP_API void *mp_shm_data(mp_shm *s);

/** The mapped size in bytes (0 for NULL). */
MP_API size_t mp_shm_size(const mp_shm *s);

/** Unmaps the segment in this process and frees the handle; the segment and
 *  its name stay (see mp_shm_unlink).  0, or -EINVAL for NULL. */
MP_API int mp_shm_close(mp_shm *s);

/** Removes the name; processes that have it open keep their mapping.
 *  0, -ENOENT (no such segment), -EINVAL (bad name), -EACCES. */
MP_API int mp_shm_unlink(const char *name);

#ifdef __cplusplus
}
#endif

#endif
