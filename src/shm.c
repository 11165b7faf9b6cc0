/* src/shm.c - anonymous shared blocks (mp_shm_alloc) and named segments
 * (mp_shm_open) on tmpfs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/core.h"
#include "mproc/shm.h"

/* ---- anonymous blocks -------------------------------------------------------
 * Each block is its own MAP_SHARED|MAP_ANONYMOUS mapping (zero-filled by the
 * kernel, inherited across fork) with a 64-byte header in front, so the user
 * pointer is 64-byte aligned (a cache line) and mp_shm_free needs only it.
 * The header is shared memory too: it is written once, at allocation, and
 * never changed, because a child freeing its copy must not disturb the
 * parent's. */
#define SHM_HDR 64
#define SHM_MAGIC UINT64_C(0x6d70726f6373686d) /* "mprocshm" */

struct shm_hdr {
    uint64_t magic; /* SHM_MAGIC ^ the mapping's address in the allocating process */
    uint64_t len;   /* bytes mapped, header included */
};

_Static_assert(sizeof(struct shm_hdr) <= SHM_HDR, "header fits");

void *mp_shm_alloc(size_t size)
{
    if (size == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (size > (size_t)PTRDIFF_MAX - SHM_HDR) {
        errno = ENOMEM;
        return NULL;
    }
    size_t len = size + SHM_HDR;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL; /* errno from mmap: ENOMEM */
    struct shm_hdr *h = base;
    h->magic = SHM_MAGIC ^ (uint64_t)(uintptr_t)base;
    h->len = len;
    return (char *)base + SHM_HDR;
}

void *mp_shm_calloc(size_t n, size_t size)
{
    if (n != 0 && size > SIZE_MAX / n) {
        errno = ENOMEM;
        return NULL;
    }
    return mp_shm_alloc(n * size);
}

void mp_shm_free(void *p)
{
    if (!p)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (((uintptr_t)p & (page - 1)) != SHM_HDR)
        return; /* cannot be a block of ours: ignore rather than crash */
    struct shm_hdr *h = (struct shm_hdr *)((char *)p - SHM_HDR);
    /* A child inherits the mapping at the same address, so the magic holds
     * there too. */
    if (h->magic != (SHM_MAGIC ^ (uint64_t)(uintptr_t)h) || h->len < SHM_HDR)
        return;
    munmap(h, (size_t)h->len);
}

/* ---- named segments ----------------------------------------------------------
 * shm_open(3) names are files in /dev/shm.  A new segment is created whole:
 * an unnamed tmpfs file (O_TMPFILE) is sized first and then given its name
 * with linkat(2), which fails with EEXIST atomically.  So MP_EXCL is exact
 * and no process ever attaches to a segment its creator has not sized yet
 * (shm_open + ftruncate has that window).  Kernels or file systems without
 * O_TMPFILE fall back to shm_open(O_CREAT|O_EXCL) + ftruncate. */
#define SHM_DIR "/dev/shm"

struct mp_shm {
    void *data;
    size_t size;
};

static int check_name(const char *name)
{
    if (!name || name[0] != '/' || name[1] == '\0')
        return -EINVAL;
    const char *base = name + 1;
    if (strlen(base) > NAME_MAX)
        return -ENAMETOOLONG;
    if (strchr(base, '/') || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return -EINVAL;
    return 0;
}

/* The classic way, with its zero-size window: shm_open + ftruncate. */
static int create_classic(const char *name, size_t size)
{
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) != 0) {
        int rc = -errno;
        shm_unlink(name);
        mp__close(fd);
        return rc;
    }
    return fd;
}

/* Creates the segment with its final size: fd, -EEXIST, or -errno. */
static int create_whole(const char *name, size_t size)
{
    int fd = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
            return create_classic(name, size); /* no O_TMPFILE here */
        return -errno;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        int rc = -errno;
        mp__close(fd);
        return rc;
    }
    char from[64], to[sizeof SHM_DIR + NAME_MAX + 1];
    snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
    snprintf(to, sizeof to, "%s%s", SHM_DIR, name);
    if (linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW) != 0) {
        int rc = -errno;
        mp__close(fd);
        if (rc == -EEXIST)
            return rc;
        /* no /proc to name the file by: fall back */
        return rc == -ENOENT ? create_classic(name, size) : rc;
    }
    return fd;
}

int mp_shm_open(mp_shm **out, const char *name, size_t size, int flags)
{
    if (!out)
        return -EINVAL;
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    if ((flags & ~(MP_CREATE | MP_EXCL)) || ((flags & MP_EXCL) && !(flags & MP_CREATE)))
        return -EINVAL;
    if (size > (size_t)PTRDIFF_MAX)
        return -EINVAL;
    mp_shm *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;

    bool created = false;
    int fd = -1;
    if (flags & MP_CREATE) {
        if (size == 0) {
            free(s);
            return -EINVAL;
        }
        fd = create_whole(name, size);
        if (fd >= 0)
            created = true;
        else if (fd != -EEXIST || (flags & MP_EXCL)) {
            free(s);
            return fd;
        }
    }
    if (!created) {
        fd = shm_open(name, O_RDWR, 0);
        if (fd < 0) {
            rc = -errno;
            free(s);
            return rc;
        }
        struct stat st;
        if (fstat(fd, &st) != 0) {
            rc = -errno;
            goto fail;
        }
        if (size == 0)
            size = (size_t)st.st_size;
        if (size == 0 || size > (size_t)st.st_size) {
            rc = -EINVAL; /* empty, or smaller than asked: mapping past it would SIGBUS */
            goto fail;
        }
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    mp__close(fd); /* the mapping keeps the segment */
    s->data = p;
    s->size = size;
    *out = s;
    return 0;

fail:
    if (created)
        shm_unlink(name);
    mp__close(fd);
    free(s);
    return rc;
}

void *mp_shm_data(mp_shm *s)
{
    return s ? s->data : NULL;
}

size_t mp_shm_size(const mp_shm *s)
{
    return s ? s->size : 0;
}

int mp_shm_close(mp_shm *s)
{
    if (!s)
        return -EINVAL;
    munmap(s->data, s->size);
    free(s);
    return 0;
}

int mp_shm_unlink(const char *name)
{
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    return shm_unlink(name) == 0 ? 0 : -errno;
}
