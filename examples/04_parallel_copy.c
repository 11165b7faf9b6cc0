/* Example 4: parallel file copy (N processes, one byte range each) */
/*
 * The seed copies the two halves of a file with two processes, each opening
 * the file itself: a file object opened before the fork would be shared,
 * and so would its offset, garbling both copies.  Here N processes each copy
 * one byte range of the source into the same destination (pread/pwrite at
 * their own offsets, each on its own descriptors), then the parent checks
 * the copy byte for byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mproc.h>

enum { NPROC = 4, CHUNK = 64 * 1024 };

typedef struct copy_job {
    const char *src, *dst;
    off_t lo, hi; /* [lo, hi) */
} copy_job;

/* The child: opens both files itself and copies its range.  0 or 1. */
static int copy_range(void *arg)
{
    const copy_job *j = arg;
    int in = open(j->src, O_RDONLY | O_CLOEXEC);
    int out = open(j->dst, O_WRONLY | O_CLOEXEC);
    if (in < 0 || out < 0)
        return 1;
    static char buf[CHUNK];
    for (off_t at = j->lo; at < j->hi;) {
        size_t want = (size_t)(j->hi - at) < sizeof buf ? (size_t)(j->hi - at) : sizeof buf;
        ssize_t n = pread(in, buf, want, at);
        if (n <= 0)
            return 1;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(out, buf + done, (size_t)(n - done), at + done);
            if (w < 0)
                return 1;
            done += w;
        }
        at += n;
    }
    printf("  %s (pid %d) copied bytes [%lld, %lld)\n", mp_current_process_name(),
           (int)getpid(), (long long)j->lo, (long long)j->hi);
    close(in);
    return close(out) == 0 ? 0 : 1;
}

static int write_file(const char *path, const unsigned char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, len);
    return close(fd) == 0 && n == (ssize_t)len ? 0 : -1;
}

static unsigned char *read_file(const char *path, size_t len)
{
    unsigned char *buf = malloc(len ? len : 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0;
    ssize_t n = 1;
    while (buf && fd >= 0 && got < len && (n = read(fd, buf + got, len - got)) > 0)
        got += (size_t)n;
    if (fd >= 0)
        close(fd);
    if (!buf || got != len) {
        free(buf);
        return NULL;
    }
    return buf;
}

int main(void)
{
    char dir[] = "/tmp/mproc_copy_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char src[64], dst[64];
    snprintf(src, sizeof src, "%s/file.jpg", dir);
    snprintf(dst, sizeof dst, "%s/copy.jpg", dir);

    /* an odd size, so the ranges are uneven */
    size_t size = 3 * 1024 * 1024 + 12345;
    unsigned char *data = malloc(size);
    if (!data)
        return 1;
    unsigned x = 12345;
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    int ok = write_file(src, data, size) == 0;
    /* the destination exists at full size before the copiers open it */
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ok = ok && fd >= 0 && ftruncate(fd, (off_t)size) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok) {
        perror("setup");
        return 1;
    }
    printf("copying %zu bytes with %d processes\n", size, NPROC);
    fflush(stdout);

    copy_job jobs[NPROC];
    mp_process *procs[NPROC];
    for (int i = 0; i < NPROC; i++) {
        jobs[i] = (copy_job){ src, dst, (off_t)(size * (size_t)i / NPROC),
                              (off_t)(size * (size_t)(i + 1) / NPROC) };
        int rc = mp_process_new(&procs[i], copy_range, &jobs[i], NULL);
        if (rc == 0)
            rc = mp_process_start(procs[i]);
        if (rc < 0) {
            fprintf(stderr, "start: %s\n", mp_strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < NPROC; i++) {
        int code = -1;
        if (mp_process_join(procs[i], MP_FOREVER) < 0 ||
            mp_process_exitcode(procs[i], &code) < 0 || code != 0) {
            fprintf(stderr, "%s failed (exit code %d)\n", mp_process_name(procs[i]), code);
            ok = 0;
        }
        mp_process_free(procs[i]);
    }

    unsigned char *copy = read_file(dst, size);
    struct stat st;
    ok = ok && copy && stat(dst, &st) == 0 && (size_t)st.st_size == size &&
         memcmp(copy, data, size) == 0;
    printf("copy %s the source (%zu bytes compared)\n", ok ? "matches" : "DIFFERS FROM", size);
    free(copy);
    free(data);
    unlink(src);
    unlink(dst);
    rmdir(dir);
    return ok ? 0 : 1;
}
