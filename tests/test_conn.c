/* Description: Pipe and connections - framing of any size, -EMSGSIZE keeps
 * the message, poll never consumes, timeouts, EOF after drain, -EPIPE without
 * SIGPIPE, torn messages from killed senders, several senders on one end,
 * fd passing, fileno with process sentinels, signals during waits. */
/* MP_TEST_TIMEOUT 40 */
#include "mp_test.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "internal/conn.h"
#include "internal/core.h"

#define WATCHDOG_S 30 /* every child ends by itself after this long */
#define MIB (1024 * 1024)

/* ---- message patterns ---------------------------------------------------------
 * A test message: a header {tag, seq, len} then bytes derived from all three,
 * so a torn, shifted or mixed-up message never checks out. */
typedef struct msg_head {
    uint32_t tag;
    uint32_t seq;
    uint64_t len;
} msg_head;

static uint8_t pat(uint32_t tag, uint32_t seq, size_t i)
{
    return (uint8_t)(i * 131u + (i >> 11) + tag * 7u + seq * 13u);
}

static char *make_msg(uint32_t tag, uint32_t seq, size_t len)
{
    char *m = malloc(len ? len : 1);
    assert_non_null(m);
    for (size_t i = 0; i < len; i++)
        m[i] = (char)pat(tag, seq, i);
    if (len >= sizeof(msg_head)) {
        msg_head h = { tag, seq, len };
        memcpy(m, &h, sizeof h);
    }
    return m;
}

/* True if m (len bytes) is exactly the message make_msg built. */
static bool check_msg(const char *m, size_t len, uint32_t *tag, uint32_t *seq)
{
    if (len < sizeof(msg_head))
        return false;
    msg_head h;
    memcpy(&h, m, sizeof h);
    if (h.len != len)
        return false;
    for (size_t i = sizeof h; i < len; i++)
        if ((uint8_t)m[i] != pat(h.tag, h.seq, i))
            return false;
    if (tag)
        *tag = h.tag;
    if (seq)
        *seq = h.seq;
    return true;
}

static int send_msg(mp_conn *c, uint32_t tag, uint32_t seq, size_t len)
{
    char *m = make_msg(tag, seq, len);
    int rc = mp_conn_send(c, m, len);
    free(m);
    return rc;
}

/* Sizes around every boundary of the implementation (inline packet limit,
 * chunk size) plus a few big ones. */
static const size_t sizes[] = { 16, 17, 64, 1000, 4064, 4065, 4096, 65535, 65536, 65537,
                                200000, 1 * MIB + 3 };

/* ---- children --------------------------------------------------------------- */

typedef struct peer {
    mp_conn *a, *b;
    int go[2];      /* parent -> child gate */
    int ready[2];   /* child -> parent */
    uint32_t tag;
    size_t len;
    int count;
} peer;

static int child_send_sizes(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_conn_close(p->a);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (send_msg(p->b, 1, (uint32_t)i, sizes[i]) != 0)
            return 1;
    mp_conn_close(p->b);
    return 0;
}

static int child_send_one(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_conn_close(p->a);
    int rc = send_msg(p->b, p->tag, 0, p->len);
    mp_conn_close(p->b);
    return rc == 0 ? 0 : 1;
}

/* Sends count messages of p->len bytes, seq 0.., then exits. */
static int child_send_many(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_conn_close(p->a);
    for (int i = 0; i < p->count; i++) {
        size_t len = p->len ? p->len : (i % 3 == 0 ? 100000 : 16 + (size_t)i % 3000);
        if (send_msg(p->b, p->tag, (uint32_t)i, len) != 0)
            return 1;
    }
    mp_conn_close(p->b);
    return 0;
}

/* Stops a child (SIGSTOP) and waits until it is stopped. */
static void stop_child(pid_t pid)
{
    int st;
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
    assert_true(WIFSTOPPED(st));
}

static void reap_ok(pid_t pid)
{
    int st = mp_test_waitpid(pid, 30000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %d: status %#x", (int)pid, st);
}

/* ---- bad input -------------------------------------------------------------------- */

static void bad_arguments(void **state)
{
    (void)state;
    mp_conn *a, *b;
    int fds0 = mp_test_fd_count();
    MP_ASSERT_ERR(mp_pipe(NULL, &b, true), -EINVAL);
    MP_ASSERT_ERR(mp_pipe(&a, NULL, true), -EINVAL);
    MP_ASSERT_OK(mp_pipe(&a, &b, true));
    size_t len;
    char buf[8];
    void *m;
    int fd;
    MP_ASSERT_ERR(mp_conn_send(NULL, "x", 1), -EINVAL);
    MP_ASSERT_ERR(mp_conn_send(a, NULL, 1), -EINVAL);
    MP_ASSERT_ERR(mp_conn_send(a, buf, (size_t)SSIZE_MAX + 1), -EMSGSIZE);
    MP_ASSERT_ERR(mp_conn_recv(NULL, buf, sizeof buf, &len, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_recv(a, NULL, 8, &len, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_recv_alloc(a, NULL, &len, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_recv_alloc(a, &m, NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_recv_fd(a, NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_recv_fd(NULL, &fd, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_send_fd(NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_send_fd(a, -1), -EBADF);
    MP_ASSERT_ERR(mp_conn_send_fd(a, 987654), -EBADF);
    MP_ASSERT_ERR(mp_conn_poll(NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_conn_fileno(NULL), -EINVAL);
    /* an empty receive with a NULL buffer of capacity 0 is fine */
    MP_ASSERT_ERR(mp_conn_recv(a, NULL, 0, &len, 0), -EAGAIN);
    mp_conn_close(NULL);
    mp_conn_close(a);
    mp_conn_close(b);
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* simplex: a only receives, b only sends; the wrong way is -EBADF. */
static void simplex_direction(void **state)
{
    (void)state;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, false));
    char buf[16];
    size_t len;
    void *m;
    MP_ASSERT_ERR(mp_conn_send(a, "x", 1), -EBADF);
    MP_ASSERT_ERR(mp_conn_recv(b, buf, sizeof buf, &len, 0), -EBADF);
    MP_ASSERT_ERR(mp_conn_recv_alloc(b, &m, &len, 0), -EBADF);
    MP_ASSERT_ERR(mp_conn_poll(b, 0), -EBADF);
    MP_ASSERT_ERR(mp_conn_send_fd(b, 0), -ENOTSUP);
    MP_ASSERT_ERR(mp_conn_recv_fd(a, &(int){ 0 }, 0), -ENOTSUP);
    assert_true(mp_conn_fileno(a) >= 0);
    assert_true(mp_conn_fileno(b) >= 0);
    MP_ASSERT_OK(mp_conn_send(b, "hello", 5));
    MP_ASSERT_OK(mp_conn_recv(a, buf, sizeof buf, &len, 0));
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* ---- framing ------------------------------------------------------------------------ */

/* Both directions of a duplex pair, small messages, in one process. */
static void duplex_both_ways(void **state)
{
    (void)state;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, true));
    char buf[64];
    size_t len;
    MP_ASSERT_OK(mp_conn_send(a, "ping", 4));
    MP_ASSERT_OK(mp_conn_send(b, "pong!", 5));
    MP_ASSERT_OK(mp_conn_recv(b, buf, sizeof buf, &len, 0));
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "ping", 4);
    MP_ASSERT_OK(mp_conn_recv(a, buf, sizeof buf, &len, 0));
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "pong!", 5);
    /* zero-length messages are messages */
    MP_ASSERT_OK(mp_conn_send(a, NULL, 0));
    MP_ASSERT_OK(mp_conn_send(a, "", 0));
    len = 99;
    MP_ASSERT_OK(mp_conn_recv(b, NULL, 0, &len, 0));
    assert_int_equal(len, 0);
    void *m = NULL;
    MP_ASSERT_OK(mp_conn_recv_alloc(b, &m, &len, 0));
    assert_non_null(m);
    assert_int_equal(len, 0);
    free(m);
    MP_ASSERT_ERR(mp_conn_recv(b, buf, sizeof buf, &len, 0), -EAGAIN);
    /* a large message that fits in the socket: once poll says ready, a
     * receive that never waits gets all of it */
    char *big = make_msg(6, 1, 100000);
    MP_ASSERT_OK(mp_conn_send(b, big, 100000));
    assert_int_equal(mp_conn_poll(a, 0), 1);
    MP_ASSERT_OK(mp_conn_recv_alloc(a, &m, &len, 0));
    assert_int_equal(len, 100000);
    assert_true(check_msg(m, len, NULL, NULL));
    free(m);
    free(big);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* Every size around the implementation's boundaries arrives whole, with its
 * boundary kept, into a caller buffer and allocated. */
static void boundaries_kept(void **state)
{
    (void)state;
    int fds0 = mp_test_fd_count();
    for (int alloc = 0; alloc < 2; alloc++) {
        peer p = { 0 };
        MP_ASSERT_OK(mp_pipe(&p.a, &p.b, true));
        pid_t pid = mp_test_fork(child_send_sizes, &p);
        mp_conn_close(p.b);
        char *buf = malloc(2 * MIB);
        assert_non_null(buf);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t len = 0;
            uint32_t tag = 0, seq = 0;
            if (alloc) {
                void *m = NULL;
                MP_ASSERT_OK(mp_conn_recv_alloc(p.a, &m, &len, 10000));
                assert_true(check_msg(m, len, &tag, &seq));
                free(m);
            } else {
                MP_ASSERT_OK(mp_conn_recv(p.a, buf, 2 * MIB, &len, 10000));
                assert_true(check_msg(buf, len, &tag, &seq));
            }
            assert_int_equal(len, sizes[i]);
            assert_int_equal(seq, i);
        }
        MP_ASSERT_ERR(mp_conn_recv(p.a, buf, 2 * MIB, &(size_t){ 0 }, 10000), MP_EOF);
        free(buf);
        reap_ok(pid);
        mp_conn_close(p.a);
    }
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* A 100 MiB message arrives intact (into a buffer, then allocated). */
static void message_100mib(void **state)
{
    (void)state;
    size_t big = 100 * (size_t)MIB;
    for (int alloc = 0; alloc < 2; alloc++) {
        peer p = { .tag = 7, .len = big };
        MP_ASSERT_OK(mp_pipe(&p.a, &p.b, false));
        pid_t pid = mp_test_fork(child_send_one, &p);
        mp_conn_close(p.b);
        size_t len = 0;
        void *m = NULL;
        if (alloc) {
            MP_ASSERT_OK(mp_conn_recv_alloc(p.a, &m, &len, 20000));
        } else {
            m = malloc(big);
            assert_non_null(m);
            MP_ASSERT_OK(mp_conn_recv(p.a, m, big, &len, 20000));
        }
        assert_int_equal(len, big);
        assert_true(check_msg(m, len, NULL, NULL));
        free(m);
        MP_ASSERT_ERR(mp_conn_recv(p.a, NULL, 0, &len, 10000), MP_EOF);
        reap_ok(pid);
        mp_conn_close(p.a);
    }
}

/* -EMSGSIZE keeps the message and says its size, for small and large ones;
 * the next receive (buffer or allocated) gets it whole. */
static void emsgsize_keeps_message(void **state)
{
    (void)state;
    static const size_t lens[] = { 100, 4064, 4065, 300000 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        peer p = { .tag = 3, .len = lens[i] };
        MP_ASSERT_OK(mp_pipe(&p.a, &p.b, false));
        pid_t pid = mp_test_fork(child_send_one, &p);
        mp_conn_close(p.b);
        char small[50];
        size_t len = 0;
        MP_ASSERT_ERR(mp_conn_recv(p.a, small, sizeof small, &len, 10000), -EMSGSIZE);
        assert_int_equal(len, lens[i]);
        MP_ASSERT_ERR(mp_conn_recv(p.a, small, sizeof small, &len, 0), -EMSGSIZE);
        assert_int_equal(len, lens[i]);
        assert_int_equal(mp_conn_poll(p.a, 0), 1);
        void *m = NULL;
        if (i % 2) {
            MP_ASSERT_OK(mp_conn_recv_alloc(p.a, &m, &len, 10000));
        } else {
            m = malloc(lens[i]);
            MP_ASSERT_OK(mp_conn_recv(p.a, m, lens[i], &len, 10000));
        }
        assert_int_equal(len, lens[i]);
        assert_true(check_msg(m, len, NULL, NULL));
        free(m);
        MP_ASSERT_ERR(mp_conn_recv(p.a, small, sizeof small, &len, 10000), MP_EOF);
        reap_ok(pid);
        mp_conn_close(p.a);
    }
}

/* poll never consumes; it reports a message and EOF, and times out. */
static void poll_never_consumes(void **state)
{
    (void)state;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, false));
    assert_int_equal(mp_conn_poll(a, 0), 0);
    int64_t t0 = mp_test_now_ms();
    assert_int_equal(mp_conn_poll(a, 60), 0);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 60 && took < 5000);
    MP_ASSERT_OK(mp_conn_send(b, "abc", 3));
    assert_int_equal(mp_conn_poll(a, 0), 1);
    assert_int_equal(mp_conn_poll(a, 1000), 1);
    assert_int_equal(mp_conn_poll(a, MP_FOREVER), 1);
    char buf[8];
    size_t len;
    MP_ASSERT_OK(mp_conn_recv(a, buf, sizeof buf, &len, 0));
    assert_int_equal(len, 3);
    assert_int_equal(mp_conn_poll(a, 0), 0);
    mp_conn_close(b);
    assert_int_equal(mp_conn_poll(a, 0), 1); /* EOF is ready too */
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0), MP_EOF);
    mp_conn_close(a);
}

/* Timeouts: 0 -> -EAGAIN at once, positive -> -ETIMEDOUT not early. */
static void recv_timeouts(void **state)
{
    (void)state;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, true));
    char buf[8];
    size_t len;
    int fd;
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0), -EAGAIN);
    void *m;
    MP_ASSERT_ERR(mp_conn_recv_alloc(a, &m, &len, 0), -EAGAIN);
    MP_ASSERT_ERR(mp_conn_recv_fd(a, &fd, 0), -EAGAIN);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 80), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 80 && took < 5000);
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_conn_recv_fd(a, &fd, 50), -ETIMEDOUT);
    took = mp_test_now_ms() - t0;
    assert_true(took >= 50 && took < 5000);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* A large message whose sender stalls half-way: a receive with a timeout
 * takes what has come, keeps it in the handle and expires; the next call
 * (buffer or allocating) resumes it, and the whole message arrives intact.
 * The sender is stopped with SIGSTOP so that "half-way" is certain: 24 MiB
 * is more than the socket can hold. */
static void partial_message_resumes(void **state)
{
    (void)state;
    size_t big = 24 * (size_t)MIB;
    peer p = { .tag = 9, .len = big };
    MP_ASSERT_OK(mp_pipe(&p.a, &p.b, true));
    pid_t pid = mp_test_fork(child_send_one, &p);
    mp_conn_close(p.b);
    char *buf = malloc(big);
    assert_non_null(buf);
    size_t len = 0;
    void *m = NULL;
    assert_int_equal(mp_conn_poll(p.a, 10000), 1); /* the frame is out */
    stop_child(pid);
    MP_ASSERT_ERR(mp_conn_recv(p.a, buf, big, &len, 0), -EAGAIN);
    assert_int_equal(mp_conn_poll(p.a, 0), 1); /* the handle holds it */
    kill(pid, SIGCONT);
    stop_child(pid); /* it could refill the socket at most once */
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_conn_recv_alloc(p.a, &m, &len, 30), -ETIMEDOUT);
    assert_true(mp_test_now_ms() - t0 >= 30);
    kill(pid, SIGCONT);
    MP_ASSERT_OK(mp_conn_recv(p.a, buf, big, &len, 20000));
    assert_int_equal(len, big);
    assert_true(check_msg(buf, len, NULL, NULL));
    free(buf);
    reap_ok(pid);
    mp_conn_close(p.a);
}

/* ---- end of file and broken pipes ---------------------------------------------- */

/* The peer sends and exits: every message already sent is received, then
 * MP_EOF, and MP_EOF again. */
static void eof_after_drain(void **state)
{
    (void)state;
    int fds0 = mp_test_fd_count();
    peer p = { .tag = 5, .count = 12 };
    MP_ASSERT_OK(mp_pipe(&p.a, &p.b, true));
    pid_t pid = mp_test_fork(child_send_many, &p);
    mp_conn_close(p.b);
    reap_ok(pid); /* the sender is gone before we read anything */
    for (int i = 0; i < p.count; i++) {
        void *m = NULL;
        size_t len;
        uint32_t tag = 0, seq = 0;
        MP_ASSERT_OK(mp_conn_recv_alloc(p.a, &m, &len, 5000));
        assert_true(check_msg(m, len, &tag, &seq));
        assert_int_equal(seq, i);
        free(m);
    }
    size_t len;
    MP_ASSERT_ERR(mp_conn_recv(p.a, NULL, 0, &len, 5000), MP_EOF);
    MP_ASSERT_ERR(mp_conn_recv(p.a, NULL, 0, &len, 0), MP_EOF);
    MP_ASSERT_ERR(mp_conn_recv_alloc(p.a, &(void *){ NULL }, &len, MP_FOREVER), MP_EOF);
    mp_conn_close(p.a);
    assert_int_equal(mp_test_fd_count(), fds0);
}

static bool sigpipe_pending(void)
{
    sigset_t s;
    sigpending(&s);
    return sigismember(&s, SIGPIPE);
}

/* Sending to a closed peer is -EPIPE, small or large, and raises no SIGPIPE
 * (SIGPIPE keeps its default action, which would kill us); the caller's
 * mask, disposition and own pending SIGPIPE are left alone. */
static void epipe_without_sigpipe(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL);
    for (int duplex = 0; duplex < 2; duplex++) {
        mp_conn *a, *b;
        MP_ASSERT_OK(mp_pipe(&a, &b, duplex));
        mp_conn_close(a);
        char *big = make_msg(1, 1, 300000);
        MP_ASSERT_ERR(mp_conn_send(b, "x", 1), -EPIPE);
        MP_ASSERT_ERR(mp_conn_send(b, big, 300000), -EPIPE);
        if (duplex)
            MP_ASSERT_ERR(mp_conn_send_fd(b, 0), -EPIPE);
        sigset_t cur;
        pthread_sigmask(SIG_SETMASK, NULL, &cur);
        assert_false(sigismember(&cur, SIGPIPE));
        assert_false(sigpipe_pending());

        /* the caller blocks SIGPIPE itself, none pending: ours is consumed */
        sigset_t pipeset;
        sigemptyset(&pipeset);
        sigaddset(&pipeset, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipeset, NULL);
        MP_ASSERT_ERR(mp_conn_send(b, "x", 1), -EPIPE);
        assert_false(sigpipe_pending());
        /* the caller's own pending SIGPIPE survives */
        raise(SIGPIPE);
        assert_true(sigpipe_pending());
        MP_ASSERT_ERR(mp_conn_send(b, "x", 1), -EPIPE);
        assert_true(sigpipe_pending());
        pthread_sigmask(SIG_SETMASK, NULL, &cur);
        assert_true(sigismember(&cur, SIGPIPE));
        static const struct timespec zero = { 0, 0 };
        assert_int_equal(sigtimedwait(&pipeset, NULL, &zero), SIGPIPE);
        pthread_sigmask(SIG_UNBLOCK, &pipeset, NULL);

        struct sigaction sa;
        sigaction(SIGPIPE, NULL, &sa);
        assert_true(sa.sa_handler == SIG_DFL);
        free(big);
        mp_conn_close(b);
    }
}

/* ---- killed senders -------------------------------------------------------------- */

/* A sender killed half-way through a 100 MiB message, while the receiver
 * holds the only other copy: never a truncated success; -ECONNRESET (or
 * -EBADMSG), then MP_EOF. */
static void killed_sender_is_reported(void **state)
{
    (void)state;
    peer p = { .tag = 2, .len = 100 * (size_t)MIB };
    MP_ASSERT_OK(mp_pipe(&p.a, &p.b, false));
    pid_t pid = mp_test_fork(child_send_one, &p);
    mp_conn_close(p.b);
    /* The frame is out: the child is somewhere inside the payload, which
     * cannot fit the socket's buffers until we read. */
    assert_int_equal(mp_conn_poll(p.a, 10000), 1);
    char *buf = malloc(p.len);
    assert_non_null(buf);
    size_t len = 0;
    /* take what it has sent so far (stopped: it cannot finish), then kill */
    stop_child(pid);
    MP_ASSERT_ERR(mp_conn_recv(p.a, buf, p.len, &len, 1), -ETIMEDOUT);
    int rc;
    kill(pid, SIGKILL);
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFSIGNALED(st));
    rc = mp_conn_recv(p.a, buf, p.len, &len, 10000);
    if (rc != -ECONNRESET && rc != -EBADMSG)
        fail_msg("recv after the sender died: %d (%s)", rc, mp_err_name(rc));
    MP_ASSERT_ERR(mp_conn_recv(p.a, buf, p.len, &len, 10000), MP_EOF);
    free(buf);
    mp_conn_close(p.a);
}

/* The same with the sending end still open elsewhere (here: in the
 * receiver's own process, as in the seed's pattern where nobody closes
 * anything): no end of file can come, yet the receiver does not wait for
 * the rest forever: it sees the dead sender and reports -EBADMSG, and the
 * connection goes on. */
static void killed_sender_end_still_open(void **state)
{
    (void)state;
    peer p = { .tag = 2, .len = 100 * (size_t)MIB };
    MP_ASSERT_OK(mp_pipe(&p.a, &p.b, false));
    pid_t pid = mp_test_fork(child_send_one, &p);
    assert_int_equal(mp_conn_poll(p.a, 10000), 1);
    stop_child(pid);
    char *buf = malloc(p.len);
    assert_non_null(buf);
    size_t len = 0;
    /* a stopped sender is alive: the receive waits out its timeout */
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_conn_recv(p.a, buf, p.len, &len, 300), -ETIMEDOUT);
    assert_true(mp_test_now_ms() - t0 >= 300);
    kill(pid, SIGKILL);
    int st = mp_test_waitpid(pid, 10000);
    assert_true(WIFSIGNALED(st));
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_conn_recv(p.a, buf, p.len, &len, MP_FOREVER), -EBADMSG);
    assert_true(mp_test_now_ms() - t0 < 5000);
    MP_ASSERT_ERR(mp_conn_recv(p.a, buf, p.len, &len, 0), -EAGAIN);
    /* the lock the dead sender held is usable: a large message goes */
    char *m = make_msg(3, 3, 300000);
    MP_ASSERT_OK(mp_conn_send(p.b, m, 300000));
    MP_ASSERT_OK(mp_conn_recv(p.a, buf, p.len, &len, 10000));
    assert_int_equal(len, 300000);
    assert_true(check_msg(buf, len, NULL, NULL));
    free(m);
    free(buf);
    mp_conn_close(p.a);
    mp_conn_close(p.b);
}

/* Senders killed at random points inside a stream of mixed messages, the
 * end kept open by other processes: every message reported as success is
 * intact and in order per sender; the torn one is -EBADMSG; the stream then
 * goes on with the next sender's messages. */
static void killed_senders_torture(void **state)
{
    (void)state;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, false));
    srand(1234);
    char *buf = malloc(2 * MIB);
    assert_non_null(buf);
    int torn = 0, good = 0;
    for (int round = 0; round < 12; round++) {
        peer p = { .a = a, .b = b, .tag = (uint32_t)round + 100, .count = 1000000 };
        p.len = round % 2 ? 0 : 1 * MIB; /* mixed sizes, or all bulk */
        pid_t pid = mp_test_fork(child_send_many, &p);
        int take = rand() % 6;
        uint32_t next = 0;
        for (int i = 0; i < take; i++) {
            size_t len;
            uint32_t tag = 0, seq = 0;
            MP_ASSERT_OK(mp_conn_recv(a, buf, 2 * MIB, &len, 10000));
            assert_true(check_msg(buf, len, &tag, &seq));
            assert_int_equal(tag, p.tag);
            assert_int_equal(seq, next);
            next++;
            good++;
        }
        /* let it get somewhere inside its current message */
        int spin = rand() % 200;
        for (int i = 0; i < spin; i++)
            sched_yield();
        kill(pid, SIGKILL);
        int st = mp_test_waitpid(pid, 10000);
        assert_true(WIFSIGNALED(st));
        /* a fresh sender marks the end of the round */
        peer q = { .a = a, .b = b, .tag = 9999, .count = 2, .len = 70000 };
        pid_t pid2 = mp_test_fork(child_send_many, &q);
        int end_seen = 0;
        while (end_seen < 2) {
            size_t len;
            uint32_t tag = 0, seq = 0;
            int rc = mp_conn_recv(a, buf, 2 * MIB, &len, 10000);
            if (rc == -EBADMSG) {
                torn++;
                continue;
            }
            MP_ASSERT_OK(rc);
            assert_true(check_msg(buf, len, &tag, &seq));
            if (tag == 9999) {
                assert_int_equal(seq, end_seen);
                end_seen++;
            } else {
                assert_int_equal(tag, p.tag);
                assert_int_equal(seq, next);
                next++;
                good++;
            }
        }
        reap_ok(pid2);
        assert_int_equal(mp_conn_poll(a, 0), 0);
    }
    print_message("%d whole messages, %d torn ones reported\n", good, torn);
    free(buf);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* A sender whose handler asks to interrupt while it waits half-way through
 * a large message gets -EINTR; the receiver gets -EBADMSG for that message
 * (an ABORT chunk, or the released lock), and the next message is whole. */
static int always_eintr(void)
{
    return -EINTR;
}

static int child_interrupted_send(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_conn_close(p->a);
    char *m = make_msg(p->tag, 0, p->len);
    mp__sig_run = always_eintr; /* what a handler returning non-zero does */
    int rc = mp_conn_send(p->b, m, p->len);
    mp__sig_run = NULL;
    free(m);
    if (rc != -EINTR)
        return 10;
    mp_test_await(p->go, 10000); /* the end stays open meanwhile */
    rc = send_msg(p->b, p->tag, 1, 5000);
    mp_conn_close(p->b);
    return rc == 0 ? 0 : 11;
}

static void interrupted_send_is_reported(void **state)
{
    (void)state;
    peer p = { .tag = 8, .len = 64 * (size_t)MIB };
    MP_ASSERT_OK(mp_pipe(&p.a, &p.b, false));
    mp_test_pipe(p.go);
    pid_t pid = mp_test_fork(child_interrupted_send, &p);
    mp_conn_close(p.b);
    void *m = NULL;
    size_t len;
    MP_ASSERT_ERR(mp_conn_recv_alloc(p.a, &m, &len, 10000), -EBADMSG);
    mp_test_signal(p.go);
    uint32_t seq = 0;
    MP_ASSERT_OK(mp_conn_recv_alloc(p.a, &m, &len, 10000));
    assert_true(check_msg(m, len, NULL, &seq));
    assert_int_equal(seq, 1);
    free(m);
    reap_ok(pid);
    MP_ASSERT_ERR(mp_conn_recv(p.a, NULL, 0, &len, 10000), MP_EOF);
    close(p.go[0]);
    close(p.go[1]);
    mp_conn_close(p.a);
}

/* A packet that mproc did not write (here: raw bytes on the sending end's
 * descriptor) is -EPROTO; the stream stays aligned on packets and the next
 * message arrives whole. */
static void foreign_packet_is_eproto(void **state)
{
    (void)state;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, false));
    assert_int_equal(write(mp_conn_fileno(b), "not a frame, just bytes", 23), 23);
    MP_ASSERT_OK(mp_conn_send(b, "fine", 4));
    char buf[16];
    size_t len;
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 0), -EPROTO);
    MP_ASSERT_OK(mp_conn_recv(a, buf, sizeof buf, &len, 0));
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "fine", 4);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* ---- several senders on one end ------------------------------------------------- */

/* The seed's pattern: five children share end b; with small and 100 KiB
 * messages mixed, every message arrives whole and in order per sender. */
static void senders_never_interleave(void **state)
{
    (void)state;
    enum { KIDS = 5, COUNT = 150 };
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, false));
    pid_t pids[KIDS];
    peer p[KIDS];
    for (int i = 0; i < KIDS; i++) {
        p[i] = (peer){ .a = a, .b = b, .tag = (uint32_t)i, .count = COUNT };
        pids[i] = mp_test_fork(child_send_many, &p[i]);
    }
    mp_conn_close(b);
    uint32_t next[KIDS] = { 0 };
    char *buf = malloc(MIB);
    assert_non_null(buf);
    for (int n = 0; n < KIDS * COUNT; n++) {
        size_t len;
        uint32_t tag = 0, seq = 0;
        MP_ASSERT_OK(mp_conn_recv(a, buf, MIB, &len, 20000));
        assert_true(check_msg(buf, len, &tag, &seq));
        assert_true(tag < KIDS);
        assert_int_equal(seq, next[tag]);
        next[tag]++;
    }
    size_t len;
    MP_ASSERT_ERR(mp_conn_recv(a, buf, MIB, &len, 10000), MP_EOF);
    for (int i = 0; i < KIDS; i++)
        reap_ok(pids[i]);
    free(buf);
    mp_conn_close(a);
}

/* ---- file descriptors -------------------------------------------------------------- */

static int child_fd_user(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_conn_close(p->a);
    char buf[64];
    size_t len;
    int fd = -1;
    /* a message, then a descriptor: each call insists on its own kind */
    if (mp_conn_recv_fd(p->b, &fd, 10000) != -EPROTO)
        return 10;
    if (mp_conn_recv(p->b, buf, sizeof buf, &len, 10000) != 0 || len != 5)
        return 11;
    if (mp_conn_recv(p->b, buf, sizeof buf, &len, 10000) != -EPROTO)
        return 12;
    if (mp_conn_recv_fd(p->b, &fd, 10000) != 0)
        return 13;
    if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
        return 14;
    if (write(fd, "through the fd", 14) != 14)
        return 15;
    close(fd);
    /* and one back the other way */
    int pfd[2];
    if (pipe(pfd) != 0)
        return 16;
    if (mp_conn_send_fd(p->b, pfd[0]) != 0)
        return 17;
    close(pfd[0]);
    if (write(pfd[1], "back", 4) != 4)
        return 18;
    close(pfd[1]);
    mp_conn_close(p->b);
    return 0;
}

static void fd_passing(void **state)
{
    (void)state;
    int fds0 = mp_test_fd_count();
    peer p = { 0 };
    MP_ASSERT_OK(mp_pipe(&p.a, &p.b, true));
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = mp_test_fork(child_fd_user, &p);
    mp_conn_close(p.b);
    MP_ASSERT_OK(mp_conn_send(p.a, "first", 5));
    MP_ASSERT_OK(mp_conn_send_fd(p.a, pfd[1]));
    close(pfd[1]);
    char buf[32] = { 0 };
    assert_int_equal(mp__read_all(pfd[0], buf, 14, NULL), 0);
    assert_memory_equal(buf, "through the fd", 14);
    int fd = -1;
    MP_ASSERT_OK(mp_conn_recv_fd(p.a, &fd, 10000));
    assert_int_equal(mp__read_all(fd, buf, 4, NULL), 0);
    assert_memory_equal(buf, "back", 4);
    close(fd);
    close(pfd[0]);
    reap_ok(pid);
    MP_ASSERT_ERR(mp_conn_recv_fd(p.a, &fd, 10000), MP_EOF);
    mp_conn_close(p.a);
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* Descriptors never leak: one sent but never received is closed with the
 * handle that holds it. */
static void unreceived_fd_is_closed(void **state)
{
    (void)state;
    int fds0 = mp_test_fd_count();
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, true));
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    MP_ASSERT_OK(mp_conn_send_fd(a, pfd[0]));
    MP_ASSERT_OK(mp_conn_send_fd(a, pfd[0]));
    close(pfd[0]);
    int fd;
    MP_ASSERT_OK(mp_conn_recv_fd(b, &fd, 0));
    close(fd);
    mp_conn_close(a);
    mp_conn_close(b);
    /* every copy of the read end is gone now */
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(write(pfd[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    close(pfd[1]);
    assert_int_equal(mp_test_fd_count(), fds0);
}

/* ---- fileno: waiting on many connections and processes --------------------------- */

static int child_reply(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_test_await(p->go, 10000);
    return send_msg(p->b, p->tag, 0, p->len) == 0 ? 0 : 1;
}

static int child_exit_on_go(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_test_await(p->go, 10000);
    return 0;
}

/* The multiprocessing.connection.wait recipe: poll(2) on several
 * connections' filenos and a process sentinel; each becomes ready in turn. */
static void fileno_with_sentinels(void **state)
{
    (void)state;
    enum { N = 3 };
    peer p[N];
    pid_t pids[N];
    /* one pipe and sender at a time, its b end closed here at once, so no
     * later child holds another's sending end (or MP_EOF would not come) */
    for (int i = 0; i < N; i++) {
        p[i] = (peer){ .tag = (uint32_t)i, .len = i == 1 ? 200000 : 64 };
        MP_ASSERT_OK(mp_pipe(&p[i].a, &p[i].b, false));
        mp_test_pipe(p[i].go);
        pids[i] = mp_test_fork(child_reply, &p[i]);
        mp_conn_close(p[i].b);
    }
    peer e = { 0 };
    mp_test_pipe(e.go);
    mp_process *proc;
    MP_ASSERT_OK(mp_process_new(&proc, child_exit_on_go, &e, NULL));
    MP_ASSERT_OK(mp_process_start(proc));

    struct pollfd fds[N + 1];
    for (int i = 0; i < N; i++)
        fds[i] = (struct pollfd){ .fd = mp_conn_fileno(p[i].a), .events = POLLIN };
    fds[N] = (struct pollfd){ .fd = mp_process_sentinel(proc), .events = POLLIN };
    assert_int_equal(poll(fds, N + 1, 0), 0);
    int order[] = { 2, N, 0, 1 };
    for (int k = 0; k < N + 1; k++) {
        int who = order[k];
        mp_test_signal(who == N ? e.go : p[who].go);
        assert_int_equal(poll(fds, N + 1, 10000), 1);
        assert_true(fds[who].revents & POLLIN);
        if (who == N) {
            MP_ASSERT_OK(mp_process_join(proc, 10000));
            fds[N].fd = -1;
        } else {
            void *m;
            size_t len;
            uint32_t tag = 0;
            MP_ASSERT_OK(mp_conn_recv_alloc(p[who].a, &m, &len, 0));
            assert_true(check_msg(m, len, &tag, NULL));
            assert_int_equal(tag, who);
            free(m);
            reap_ok(pids[who]);
            /* the sender is gone: its fileno now polls ready for MP_EOF */
            MP_ASSERT_ERR(mp_conn_recv(p[who].a, NULL, 0, &len, 0), MP_EOF);
            fds[who].fd = -1;
        }
    }
    mp_process_free(proc);
    for (int i = 0; i < N; i++) {
        mp_conn_close(p[i].a);
        close(p[i].go[0]);
        close(p[i].go[1]);
    }
    close(e.go[0]);
    close(e.go[1]);
}

/* ---- signals during waits ------------------------------------------------------------ */

static volatile sig_atomic_t alarms;
static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

/* EINTR from a plain signal handler (no SA_RESTART) is retried with what is
 * left of the timeout: the call neither ends early nor runs long. */
static void eintr_keeps_deadline(void **state)
{
    (void)state;
    struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 5000 }, { 0, 5000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, true));
    char buf[8];
    size_t len;
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 150), -ETIMEDOUT);
    int64_t took = mp_test_now_ms() - t0;
    assert_true(took >= 150 && took < 5000);
    t0 = mp_test_now_ms();
    assert_int_equal(mp_conn_poll(a, 100), 0);
    took = mp_test_now_ms() - t0;
    assert_true(took >= 100 && took < 5000);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    assert_true(alarms > 5);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* A blocking receive without deadline survives plain EINTRs and still
 * returns the message that comes later. */
static int child_send_after_go(void *arg)
{
    peer *p = arg;
    alarm(WATCHDOG_S);
    mp_test_await(p->go, 10000);
    int rc = send_msg(p->b, p->tag, 0, p->len);
    return rc == 0 ? 0 : 1;
}

static void eintr_forever_wait(void **state)
{
    (void)state;
    peer p = { .tag = 4, .len = 500000 };
    MP_ASSERT_OK(mp_pipe(&p.a, &p.b, true));
    mp_test_pipe(p.go);
    pid_t pid = mp_test_fork(child_send_after_go, &p);
    struct sigaction sa = { .sa_handler = on_alarm };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarms = 0;
    struct itimerval it = { { 0, 3000 }, { 0, 3000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    /* the timer interrupts the receive below while it waits for the frame
     * and while the 500 KB payload streams in */
    void *m = NULL;
    size_t len;
    mp_test_signal(p.go);
    MP_ASSERT_OK(mp_conn_recv_alloc(p.a, &m, &len, MP_FOREVER));
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    assert_int_equal(len, p.len);
    assert_true(check_msg(m, len, NULL, NULL));
    free(m);
    reap_ok(pid);
    close(p.go[0]);
    close(p.go[1]);
    mp_conn_close(p.a);
    mp_conn_close(p.b);
}

/* With mproc's signal hooks in place (what mp_signal_on installs), a
 * pending handler that asks to interrupt makes the wait return -EINTR;
 * one that does not ask lets it go on waiting. */
static int fake_want_eintr;
static int fake_runs;
static int fake_sig_fd = -1;
static int fake_sig_run(void)
{
    char c;
    fake_runs++;
    while (read(fake_sig_fd, &c, 1) == 1) /* drain, as the signal module does */
        ;
    return fake_want_eintr ? -EINTR : 0;
}

static int child_poke(void *arg)
{
    int *fds = arg;
    alarm(WATCHDOG_S);
    char c = 1;
    return write(fds[1], &c, 1) == 1 ? 0 : 1;
}

static void handler_interrupts_wait(void **state)
{
    (void)state;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, true));
    int sigp[2];
    mp_test_pipe(sigp);
    int (*saved_run)(void) = mp__sig_run;
    int saved_fd = mp__sig_fd;
    fcntl(sigp[0], F_SETFL, O_NONBLOCK);
    fake_sig_fd = sigp[0];
    mp__sig_fd = sigp[0];
    mp__sig_run = fake_sig_run;

    /* a handler that does not interrupt: the wait goes on to its deadline */
    fake_want_eintr = 0;
    pid_t pid = mp_test_fork(child_poke, sigp);
    char buf[8];
    size_t len;
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, &len, 100), -ETIMEDOUT);
    assert_true(mp_test_now_ms() - t0 >= 100);
    assert_true(fake_runs > 0);
    reap_ok(pid);

    /* one that does: -EINTR, even for a wait without deadline */
    fake_want_eintr = 1;
    pid = mp_test_fork(child_poke, sigp);
    MP_ASSERT_ERR(mp_conn_recv(a, buf, sizeof buf, &len, MP_FOREVER), -EINTR);
    MP_ASSERT_ERR(mp_conn_poll(a, MP_FOREVER), -EINTR);
    reap_ok(pid);

    mp__sig_run = saved_run;
    mp__sig_fd = saved_fd;
    close(sigp[0]);
    close(sigp[1]);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* ---- kernels without RWF_NOWAIT on pipes ------------------------------------------ */

/* The fallback (O_NONBLOCK pipe ends, every wait through poll) keeps the
 * packet mode and every behaviour: sizes, timeouts, EOF, EMSGSIZE. */
static void fallback_without_rwf_nowait(void **state)
{
    mp__conn_no_rwf_nowait = true;
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, false));
    assert_true(fcntl(mp_conn_fileno(a), F_GETFL) & O_NONBLOCK);
    int fl = fcntl(mp_conn_fileno(b), F_GETFL); /* the write end */
    assert_true(fl & O_NONBLOCK);
    assert_true(fl & O_DIRECT); /* packet mode kept */
    mp_conn_close(a);
    mp_conn_close(b);
    duplex_both_ways(state);
    boundaries_kept(state);
    emsgsize_keeps_message(state);
    recv_timeouts(state);
    eof_after_drain(state);
    mp__conn_no_rwf_nowait = false;
}

/* A descriptor that arrives when the receiver has no free descriptor slot
 * is reported as -EMFILE (not as a torn message), and the stream goes on. */
static void recv_fd_at_descriptor_limit(void **state)
{
    (void)state;
    int fds0 = mp_test_fd_count();
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, true));
    MP_ASSERT_OK(mp_conn_send_fd(a, 0));
    MP_ASSERT_OK(mp_conn_send(a, "after", 5));
    /* The lowest free descriptor becomes the limit: none can be added. */
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    struct rlimit old, rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    rl = old;
    rl.rlim_cur = (rlim_t)lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int fd = -1;
    int rc = mp_conn_recv_fd(b, &fd, 5000);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    MP_ASSERT_ERR(rc, -EMFILE);
    assert_int_equal(fd, -1);
    char buf[8];
    size_t len;
    MP_ASSERT_OK(mp_conn_recv(b, buf, sizeof buf, &len, 5000));
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "after", 5);
    mp_conn_close(a);
    mp_conn_close(b);
    assert_int_equal(mp_test_fd_count(), fds0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(bad_arguments),
    cmocka_unit_test(simplex_direction),
    cmocka_unit_test(duplex_both_ways),
    cmocka_unit_test(boundaries_kept),
    cmocka_unit_test(message_100mib),
    cmocka_unit_test(emsgsize_keeps_message),
    cmocka_unit_test(poll_never_consumes),
    cmocka_unit_test(recv_timeouts),
    cmocka_unit_test(partial_message_resumes),
    cmocka_unit_test(eof_after_drain),
    cmocka_unit_test(epipe_without_sigpipe),
    cmocka_unit_test(killed_sender_is_reported),
    cmocka_unit_test(killed_sender_end_still_open),
    cmocka_unit_test(killed_senders_torture),
    cmocka_unit_test(interrupted_send_is_reported),
    cmocka_unit_test(foreign_packet_is_eproto),
    cmocka_unit_test(senders_never_interleave),
    cmocka_unit_test(fd_passing),
    cmocka_unit_test(unreceived_fd_is_closed),
    cmocka_unit_test(fileno_with_sentinels),
    cmocka_unit_test(eintr_keeps_deadline),
    cmocka_unit_test(eintr_forever_wait),
    cmocka_unit_test(handler_interrupts_wait),
    cmocka_unit_test(fallback_without_rwf_nowait),
    cmocka_unit_test(recv_fd_at_descriptor_limit),
};

MP_TEST_MAIN(tests)
