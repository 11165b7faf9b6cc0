/* tests/support/mp_test.c - helpers shared by the test files. */
#include "mp_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

int mp_test_skipped;

int mp_test_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

int64_t mp_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pid_t mp_test_fork(int (*fn)(void *), void *arg)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(99);
        int rc = fn(arg);
        fflush(NULL);
        _exit(rc);
    }
    return pid;
}

int mp_test_waitpid(pid_t pid, int timeout_ms)
{
    int64_t end = mp_test_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
        if (mp_test_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("child %d still running after %d ms", (int)pid, timeout_ms);
        }
        /* a bounded poll on nothing: sleep 1 ms between checks */
        poll(NULL, 0, 1);
    }
}

void *mp_test_shared(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        fail_msg("mmap(%zu): %s", n, strerror(errno));
    return p;
}

bool mp_test_stat_sleeping(const char *stat_path, int timeout_ms)
{
    int64_t end = mp_test_now_ms() + timeout_ms;
    char buf[512];
    do {
        int fd = open(stat_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return false;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = '\0';
            const char *p = strrchr(buf, ')'); /* the name may hold spaces */
            if (p && p[1] == ' ' && p[2] == 'S')
                return true;
        }
        poll(NULL, 0, 1);
    } while (mp_test_now_ms() < end);
    return false;
}

bool mp_test_pid_sleeping(pid_t pid, int timeout_ms)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return mp_test_stat_sleeping(path, timeout_ms);
}

void mp_test_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        fail_msg("pipe: %s", strerror(errno));
}

void mp_test_signal(int fds[2])
{
    char c = 1;
    while (write(fds[1], &c, 1) != 1)
        if (errno != EINTR)
            fail_msg("sync write: %s", strerror(errno));
}

void mp_test_await(int fds[2], int timeout_ms)
{
    struct pollfd p = { .fd = fds[0], .events = POLLIN };
    int64_t end = mp_test_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - mp_test_now_ms());
        if (left < 0)
            left = 0;
        int rc = poll(&p, 1, left);
        if (rc == 1)
            break;
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            fail_msg("no sync byte within %d ms", timeout_ms);
        fail_msg("sync poll: %s", strerror(errno));
    }
    char c;
    while (read(fds[0], &c, 1) != 1)
        if (errno != EINTR)
            fail_msg("sync read: %s", strerror(errno));
}

int mp_test_main(const char *file, const struct CMUnitTest *tests, size_t n,
                 int argc, char **argv)
{
    const char *group = strrchr(file, '/');
    group = group ? group + 1 : file;
    if (argc > 1) {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(tests[i].name, argv[1]) == 0)
                break;
        if (i == n) {
            fprintf(stderr, "%s: no test named %s\n", group, argv[1]);
            return 2;
        }
        int rc = _cmocka_run_group_tests(group, &tests[i], 1, NULL, NULL);
        /* cmocka counts a skipped test as passed: tell ctest it was not */
        return rc == 0 && mp_test_skipped ? 77 : rc;
    }
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}
