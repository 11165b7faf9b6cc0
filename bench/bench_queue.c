/* bench/bench_queue.c - mproc's queue against the message-passing peers a C
 * programmer could pick: POSIX mq (depth 128), a pipe with length-prefix
 * framing, Boost.Interprocess message_queue and ZeroMQ ipc:// PUSH/PULL (when
 * installed), and Python's multiprocessing Queue and SimpleQueue.
 *
 * Scenarios (each a set of forked processes, started together by closing a
 * start pipe; the clock runs from the start to the last consumer's end):
 *   1to1_64B   1 producer (CPU 0) -> 1 consumer (CPU 1), 1,000,000 x 64 B
 *   1to1_4KiB  the same with 200,000 x 4 KiB
 *   2to2_64B   2 producers -> 2 consumers, 1,000,000 x 64 B in total
 *   rtt_*      round trip of a 64 B message through two channels, ping on
 *              CPU 0 and pong on CPU 0 (same) or CPU 1 (cross): p50 and p99
 * Each producer ends with one stop message per consumer; a consumer ends
 * after one stop per producer (FIFO per producer makes that exact).
 * "mproc-nospin" is mproc with its pre-sleep spin disabled, and "mproc-nolag"
 * mproc whose consumer takes a message the instant its spin sees it (no
 * 300 ns lag behind the producer), to show what each choice buys.
 * MP_BENCH_ONLY=<prefix> runs only the implementations whose name starts so.  MP_BENCH_QUICK=1 divides the message counts by 10.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench.h"

#ifdef BENCH_HAVE_ZMQ
#include <zmq.h>
#endif

#ifdef BENCH_HAVE_BOOST
int bench_boost_create(const char *name, size_t depth, size_t msgsize);
void *bench_boost_open(const char *name);
int bench_boost_send(void *h, const void *msg, size_t len);
long bench_boost_recv(void *h, void *buf, size_t cap);
void bench_boost_close(void *h);
void bench_boost_remove(const char *name);
#endif

/* mproc's spin budget before sleeping (internal knob, src/internal/ring.h). */
extern int64_t mp__queue_spin_ns;
extern int64_t mp__queue_spin_lag_ns;

#define MAXC 4
#define STOP UINT64_MAX

/* ---- transports: one channel = one queue/pipe/socket set ------------------- */

typedef struct tp {
    const char *name;
    bool mpmc;
    int (*create)(int id, size_t msgsize, int ncons); /* parent, before fork */
    void *(*open_tx)(int id);                         /* child */
    void *(*open_rx)(int id, int which);              /* child */
    int (*send)(void *h, const void *m, size_t n);
    long (*recv)(void *h, void *buf, size_t cap);
    void (*close_tx)(void *h);
    void (*close_rx)(void *h);
    void (*destroy)(int id);                          /* parent */
    void (*child_init)(void);                         /* child, after fork */
    void (*child_fini)(void);                         /* child, before _exit */
} tp;

static char names[4][64];

/* mproc */
static mp_queue *mq_q[4];
static int64_t spin_default;
static int m_create(int id, size_t msgsize, int ncons)
{
    (void)msgsize;
    (void)ncons;
    return mp_queue_new(&mq_q[id], NULL) == 0 ? 0 : -1;
}
static void *m_open(int id) { return mq_q[id]; }
static void *m_open_rx(int id, int which) { (void)which; return mq_q[id]; }
static int m_send(void *h, const void *m, size_t n) { return mp_queue_put(h, m, n, MP_FOREVER); }
static long m_recv(void *h, void *buf, size_t cap)
{
    size_t len;
    int rc = mp_queue_get(h, buf, cap, &len, MP_FOREVER);
    return rc == 0 ? (long)len : -1;
}
static void m_close(void *h) { (void)h; }
static void m_destroy(int id) { mp_queue_free(mq_q[id]); }
static void m_spin(void) { mp__queue_spin_ns = spin_default; }
static void m_nolag(void)
{
    mp__queue_spin_ns = spin_default;
    mp__queue_spin_lag_ns = 0;
}
static void m_nospin(void) { mp__queue_spin_ns = 0; }

/* POSIX mq, depth 128 */
static size_t mq_msgsize;
static int p_create(int id, size_t msgsize, int ncons)
{
    (void)ncons;
    snprintf(names[id], sizeof names[id], "/mpbench_mq_%d_%d", (int)getpid(), id);
    struct mq_attr a = { .mq_maxmsg = 128, .mq_msgsize = (long)msgsize };
    mq_unlink(names[id]);
    mqd_t d = mq_open(names[id], O_CREAT | O_RDWR, 0600, &a);
    if (d == (mqd_t)-1 && errno == EINVAL) {
        /* Without CAP_SYS_RESOURCE the depth is capped by fs.mqueue.msg_max */
        FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "r");
        long max = 0;
        if (f) {
            if (fscanf(f, "%ld", &max) != 1)
                max = 0;
            fclose(f);
        }
        if (max > 0 && max < 128) {
            static bool said;
            if (!said)
                printf("# bench_queue: posix-mq depth %ld, not 128 (fs.mqueue.msg_max)\n", max);
            said = true;
            a.mq_maxmsg = max;
            d = mq_open(names[id], O_CREAT | O_RDWR, 0600, &a);
        }
    }
    if (d == (mqd_t)-1)
        return -1;
    mq_close(d);
    mq_msgsize = msgsize;
    return 0;
}
static void *p_open(int id)
{
    mqd_t d = mq_open(names[id], O_RDWR);
    return d == (mqd_t)-1 ? NULL : (void *)(intptr_t)(d + 1);
}
static void *p_open_rx(int id, int which) { (void)which; return p_open(id); }
static int p_send(void *h, const void *m, size_t n)
{
    return mq_send((mqd_t)((intptr_t)h - 1), m, n, 0);
}
static long p_recv(void *h, void *buf, size_t cap)
{
    (void)cap;
    return mq_receive((mqd_t)((intptr_t)h - 1), buf, mq_msgsize, NULL);
}
static void p_close(void *h) { mq_close((mqd_t)((intptr_t)h - 1)); }
static void p_destroy(int id) { mq_unlink(names[id]); }

/* pipe with a 4-byte length prefix (1 -> 1 only: framing needs one reader) */
static int pipes[4][2];
static int f_create(int id, size_t msgsize, int ncons)
{
    (void)msgsize;
    (void)ncons;
    return pipe(pipes[id]);
}
static void *f_open(int id) { return &pipes[id][1]; }
static void *f_open_rx(int id, int which) { (void)which; return &pipes[id][0]; }
static int f_send(void *h, const void *m, size_t n)
{
    uint32_t len = (uint32_t)n;
    struct iovec iov[2] = { { &len, 4 }, { (void *)m, n } };
    size_t left = 4 + n;
    int i = 0;
    while (left) {
        ssize_t w = writev(*(int *)h, iov + i, 2 - i);
        if (w < 0)
            return -1;
        left -= (size_t)w;
        while (i < 2 && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < 2) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    return 0;
}
static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}
static long f_recv(void *h, void *buf, size_t cap)
{
    uint32_t len;
    if (read_full(*(int *)h, &len, 4) || len > cap || read_full(*(int *)h, buf, len))
        return -1;
    return len;
}
static void f_close(void *h) { (void)h; }
static void f_destroy(int id) { close(pipes[id][0]); close(pipes[id][1]); }

#ifdef BENCH_HAVE_ZMQ
/* ZeroMQ: each consumer binds a PULL socket; a producer connects one PUSH
 * socket per consumer and deals messages round-robin, as PUSH would. */
static int zncons[4];
static void *zctx;
struct ztx {
    void *s[MAXC];
    int n, next;
};
static int z_create(int id, size_t msgsize, int ncons)
{
    (void)msgsize;
    snprintf(names[id], sizeof names[id], "ipc:///tmp/mpbench_zmq_%d_%d", (int)getpid(), id);
    zncons[id] = ncons;
    return 0;
}
static void z_child(void) { zctx = zmq_ctx_new(); }
static void *z_open(int id)
{
    struct ztx *t = calloc(1, sizeof *t);
    t->n = zncons[id];
    for (int i = 0; i < t->n; i++) {
        char ep[96];
        snprintf(ep, sizeof ep, "%s_%d", names[id], i);
        t->s[i] = zmq_socket(zctx, ZMQ_PUSH);
        zmq_connect(t->s[i], ep);
    }
    return t;
}
static void *z_open_rx(int id, int which)
{
    char ep[96];
    snprintf(ep, sizeof ep, "%s_%d", names[id], which);
    void *s = zmq_socket(zctx, ZMQ_PULL);
    int ms = 10000; /* never hang the benchmark: a lost stop fails the run */
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    if (zmq_bind(s, ep) != 0)
        return NULL;
    return s;
}
static int z_send(void *h, const void *m, size_t n)
{
    struct ztx *t = h;
    void *s = t->s[t->next];
    t->next = (t->next + 1) % t->n;
    return zmq_send(s, m, n, 0) == (int)n ? 0 : -1;
}
static long z_recv(void *h, void *buf, size_t cap) { return zmq_recv(h, buf, cap, 0); }
static void z_close_tx(void *h)
{
    struct ztx *t = h;
    int linger = 10000;
    for (int i = 0; i < t->n; i++) {
        zmq_setsockopt(t->s[i], ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(t->s[i]);
    }
    free(t);
}
static void z_close_rx(void *h) { zmq_close(h); }
static void z_fini(void) { zmq_ctx_term(zctx); /* waits until all queued is delivered */ }
static void z_destroy(int id)
{
    for (int i = 0; i < zncons[id]; i++) {
        char p[96];
        snprintf(p, sizeof p, "/tmp/mpbench_zmq_%d_%d_%d", (int)getpid(), id, i);
        unlink(p);
    }
}
#endif

#ifdef BENCH_HAVE_BOOST
static size_t bmsgsize;
static int b_create(int id, size_t msgsize, int ncons)
{
    (void)ncons;
    snprintf(names[id], sizeof names[id], "mpbench_boost_%d_%d", (int)getpid(), id);
    bmsgsize = msgsize;
    return bench_boost_create(names[id], 128, msgsize);
}
static void *b_open(int id) { return bench_boost_open(names[id]); }
static void *b_open_rx(int id, int which) { (void)which; return b_open(id); }
static long b_recv(void *h, void *buf, size_t cap)
{
    (void)cap;
    return bench_boost_recv(h, buf, bmsgsize);
}
static void b_destroy(int id) { bench_boost_remove(names[id]); }
#endif

static const tp transports[] = {
    { "mproc", true, m_create, m_open, m_open_rx, m_send, m_recv, m_close, m_close, m_destroy, m_spin, NULL },
    { "mproc-nospin", true, m_create, m_open, m_open_rx, m_send, m_recv, m_close, m_close, m_destroy,
      m_nospin, NULL },
    { "mproc-nolag", true, m_create, m_open, m_open_rx, m_send, m_recv, m_close, m_close,
      m_destroy, m_nolag, NULL },
    { "posix-mq", true, p_create, p_open, p_open_rx, p_send, p_recv, p_close, p_close, p_destroy, NULL, NULL },
    { "pipe", false, f_create, f_open, f_open_rx, f_send, f_recv, f_close, f_close, f_destroy, NULL, NULL },
#ifdef BENCH_HAVE_ZMQ
    { "zeromq", true, z_create, z_open, z_open_rx, z_send, z_recv, z_close_tx, z_close_rx, z_destroy, z_child,
      z_fini },
#endif
#ifdef BENCH_HAVE_BOOST
    { "boost-mq", true, b_create, b_open, b_open_rx, bench_boost_send, b_recv, bench_boost_close,
      bench_boost_close, b_destroy, NULL, NULL },
#endif
};
#define NTP ((int)(sizeof transports / sizeof transports[0]))

/* ---- scenarios ------------------------------------------------------------------ */

struct shared {
    int64_t end_ns[MAXC];
    long got[MAXC];
    int bad;
    double rtt[2][100000];
};
static struct shared *sh;
static long peak_rss[16];

static int start_wr = -1; /* the start pipe's write end: children close it */

static pid_t spawn(int cpu, int start_fd, const tp *t, int (*fn)(const tp *, void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    close(start_wr);
    if (cpu >= 0)
        bench_pin(cpu);
    if (t->child_init)
        t->child_init();
    char c;
    if (read(start_fd, &c, 1) < 0) /* EOF: the parent started the clock */
        _exit(2);
    int rc = fn(t, arg);
    if (t->child_fini)
        t->child_fini();
    _exit(rc);
}

struct job {
    int id, which, nprod, ncons;
    long count;
    size_t size;
    int rounds;
};

static int producer(const tp *t, void *arg)
{
    struct job *j = arg;
    void *h = t->open_tx(j->id);
    if (!h)
        return 1;
    char msg[4096];
    memset(msg, 'x', sizeof msg);
    for (long i = 0; i < j->count; i++) {
        uint64_t seq = (uint64_t)i;
        memcpy(msg, &seq, 8);
        if (t->send(h, msg, j->size) != 0)
            return 3;
    }
    uint64_t stop = STOP;
    memcpy(msg, &stop, 8);
    for (int c = 0; c < j->ncons; c++)
        if (t->send(h, msg, j->size) != 0)
            return 4;
    t->close_tx(h);
    return 0;
}

static int consumer(const tp *t, void *arg)
{
    struct job *j = arg;
    void *h = t->open_rx(j->id, j->which);
    if (!h)
        return 1;
    char buf[8192];
    long got = 0;
    int stops = 0;
    int64_t last = -1;
    while (stops < j->nprod) {
        long n = t->recv(h, buf, sizeof buf);
        if (n < 8)
            return 3;
        uint64_t seq;
        memcpy(&seq, buf, 8);
        if (seq == STOP) {
            stops++;
            continue;
        }
        if (j->nprod == 1 && (int64_t)seq != last + 1)
            sh->bad = 1;
        last = (int64_t)seq;
        got++;
    }
    sh->end_ns[j->which] = bench_now_ns();
    sh->got[j->which] = got;
    t->close_rx(h);
    return 0;
}

static int pinger(const tp *t, void *arg)
{
    struct job *j = arg;
    void *tx = t->open_tx(0), *rx = t->open_rx(1, 0);
    if (!tx || !rx)
        return 1;
    char msg[64] = { 0 }, buf[8192];
    for (int i = -1000; i < j->rounds; i++) {
        uint64_t seq = (uint64_t)(i + 1000);
        memcpy(msg, &seq, 8);
        int64_t t0 = bench_now_ns();
        if (t->send(tx, msg, 64) != 0 || t->recv(rx, buf, sizeof buf) != 64)
            return 2;
        if (i >= 0)
            sh->rtt[j->which][i] = (double)(bench_now_ns() - t0) / 1000.0;
    }
    uint64_t stop = STOP;
    memcpy(msg, &stop, 8);
    t->send(tx, msg, 64);
    t->close_tx(tx);
    t->close_rx(rx);
    return 0;
}

static int ponger(const tp *t, void *arg)
{
    (void)arg;
    void *rx = t->open_rx(0, 0), *tx = t->open_tx(1);
    if (!tx || !rx)
        return 1;
    char buf[8192];
    for (;;) {
        long n = t->recv(rx, buf, sizeof buf);
        if (n != 64)
            return 2;
        uint64_t seq;
        memcpy(&seq, buf, 8);
        if (seq == STOP)
            break;
        if (t->send(tx, buf, 64) != 0)
            return 3;
    }
    t->close_tx(tx);
    t->close_rx(rx);
    return 0;
}

/* Waits for the children, keeping the peak RSS of impl ti. */
static int reap(int ti, pid_t *pids, int n)
{
    int ok = 1;
    for (int i = 0; i < n; i++) {
        int st;
        struct rusage ru;
        if (wait4(pids[i], &st, 0, &ru) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            ok = 0;
        if (ru.ru_maxrss > peak_rss[ti])
            peak_rss[ti] = ru.ru_maxrss;
    }
    return ok;
}

/* msgs/s for nprod -> ncons, or -1 if the transport cannot do it. */
static double throughput(int ti, int nprod, int ncons, long total, size_t size, bool pin)
{
    const tp *t = &transports[ti];
    if ((nprod > 1 || ncons > 1) && !t->mpmc)
        return -1;
    if (t->create(0, size, ncons) != 0)
        return -1;
    memset(sh->end_ns, 0, sizeof sh->end_ns);
    sh->bad = 0;
    int sp[2];
    if (pipe(sp) != 0)
        return -1;
    start_wr = sp[1];
    pid_t pids[8];
    struct job jobs[8];
    int n = 0;
    for (int c = 0; c < ncons; c++) {
        jobs[n] = (struct job){ .id = 0, .which = c, .nprod = nprod, .ncons = ncons, .size = size };
        pids[n] = spawn(pin ? 1 : -1, sp[0], t, consumer, &jobs[n]);
        n++;
    }
    for (int p = 0; p < nprod; p++) {
        jobs[n] = (struct job){ .id = 0, .which = p, .nprod = nprod, .ncons = ncons,
                                .count = total / nprod, .size = size };
        pids[n] = spawn(pin ? 0 : -1, sp[0], t, producer, &jobs[n]);
        n++;
    }
    /* let the children reach their start read, then start the clock */
    usleep(20000);
    int64_t t0 = bench_now_ns();
    close(sp[1]);
    int ok = reap(ti, pids, n);
    close(sp[0]);
    t->destroy(0);
    int64_t end = 0;
    long got = 0;
    for (int c = 0; c < ncons; c++) {
        if (sh->end_ns[c] > end)
            end = sh->end_ns[c];
        got += sh->got[c];
    }
    if (!ok || sh->bad || got != total / nprod * nprod) {
        fprintf(stderr, "bench_queue: %s %d->%d failed (got %ld)\n", t->name, nprod, ncons, got);
        return -1;
    }
    return (double)got / ((double)(end - t0) / 1e9);
}

/* Round trips: fills p50/p99 in microseconds. */
static int roundtrip(int ti, bool cross, int rounds, double *p50, double *p99)
{
    const tp *t = &transports[ti];
    if (t->create(0, 64, 1) != 0)
        return -1;
    if (t->create(1, 64, 1) != 0) {
        t->destroy(0);
        return -1;
    }
    int sp[2];
    if (pipe(sp) != 0)
        return -1;
    start_wr = sp[1];
    struct job j = { .which = 0, .rounds = rounds };
    pid_t pids[2];
    pids[0] = spawn(cross ? 1 : 0, sp[0], t, ponger, &j);
    pids[1] = spawn(0, sp[0], t, pinger, &j);
    usleep(20000);
    close(sp[1]);
    int ok = reap(ti, pids, 2);
    close(sp[0]);
    t->destroy(0);
    t->destroy(1);
    if (!ok)
        return -1;
    *p50 = bench_percentile(sh->rtt[0], rounds, 50);
    *p99 = bench_percentile(sh->rtt[0], rounds, 99);
    return 0;
}

/* ---- the table ------------------------------------------------------------------- */

enum { M_1TO1_64, M_1TO1_4K, M_2TO2_64, M_RTT_SAME50, M_RTT_SAME99, M_RTT_CROSS50,
       M_RTT_CROSS99, NMETRIC };
static const char *metric_name[NMETRIC] = { "1to1_64B", "1to1_4KiB", "2to2_64B",
                                            "rtt_same_cpu_p50", "rtt_same_cpu_p99",
                                            "rtt_cross_cpu_p50", "rtt_cross_cpu_p99" };
static const bool higher_better[NMETRIC] = { 1, 1, 1, 0, 0, 0, 0 };

#define MAXIMPL 16
#define MAXRUNS 32
static const char *impl_name[MAXIMPL];
static int nimpl;
static double vals[MAXIMPL][NMETRIC][MAXRUNS];
static int nvals[MAXIMPL][NMETRIC];

static int impl_index(const char *name)
{
    for (int i = 0; i < nimpl; i++)
        if (strcmp(impl_name[i], name) == 0)
            return i;
    if (nimpl == MAXIMPL)
        return -1;
    impl_name[nimpl] = strdup(name);
    return nimpl++;
}

static void record(const char *impl, int m, double v)
{
    int i = impl_index(impl);
    if (i < 0 || v < 0 || nvals[i][m] >= MAXRUNS)
        return;
    vals[i][m][nvals[i][m]++] = v;
}

/* Runs the Python peers once and records their @bench lines. */
static void run_python(long scale, bool last)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/queue.py %ld", bench_python(), bench_py_dir(), scale);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char impl[64], metric[64];
        double v;
        if (last && strncmp(line, "@rss ", 5) == 0)
            fputs(line, stdout);
        if (sscanf(line, "@bench bench=queue impl=%63s metric=%63s value=%lf", impl, metric, &v) != 3)
            continue;
        for (int m = 0; m < NMETRIC; m++)
            if (strcmp(metric, metric_name[m]) == 0)
                record(impl, m, v);
    }
    pclose(f);
}

int main(void)
{
    int runs = bench_runs();
    if (runs > MAXRUNS)
        runs = MAXRUNS;
    long div = getenv("MP_BENCH_QUICK") ? 10 : 1;
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    spin_default = mp__queue_spin_ns;
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < NTP; i++)
        impl_index(transports[i].name);
    int rounds = (int)(20000 / div);
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < NTP; i++) {
            const char *n = transports[i].name;
            const char *only = getenv("MP_BENCH_ONLY");
            if (only && *only && strncmp(n, only, strlen(only)) != 0)
                continue;
            record(n, M_1TO1_64, throughput(i, 1, 1, 1000000 / div, 64, true));
            record(n, M_1TO1_4K, throughput(i, 1, 1, 200000 / div, 4096, true));
            record(n, M_2TO2_64, throughput(i, 2, 2, 1000000 / div, 64, false));
            double p50, p99;
            if (roundtrip(i, false, rounds, &p50, &p99) == 0) {
                record(n, M_RTT_SAME50, p50);
                record(n, M_RTT_SAME99, p99);
            }
            if (roundtrip(i, true, rounds, &p50, &p99) == 0) {
                record(n, M_RTT_CROSS50, p50);
                record(n, M_RTT_CROSS99, p99);
            }
        }
        const char *only = getenv("MP_BENCH_ONLY");
        if (!only || !*only || strncmp("python", only, strlen(only)) == 0)
            run_python(div, r == runs - 1);
        fprintf(stderr, "bench_queue: run %d/%d done\n", r + 1, runs);
    }
    double med[MAXIMPL][NMETRIC];
    for (int i = 0; i < nimpl; i++)
        for (int m = 0; m < NMETRIC; m++) {
            med[i][m] = nvals[i][m] ? bench_median(vals[i][m], nvals[i][m]) : -1;
            if (med[i][m] >= 0)
                bench_report("queue", impl_name[i], metric_name[m], med[i][m],
                             higher_better[m] ? "msgs/s" : "us");
        }
    for (int m = 0; m < NMETRIC; m++)
        for (int i = 1; i < nimpl; i++)
            if (med[0][m] > 0 && med[i][m] > 0)
                bench_ratio("queue", metric_name[m], "mproc", med[0][m], impl_name[i], med[i][m],
                            higher_better[m]);
    for (int i = 0; i < NTP; i++)
        printf("@rss bench=queue impl=%s value=%ld unit=KiB\n", transports[i].name, peak_rss[i]);
#ifndef BENCH_HAVE_ZMQ
    printf("# bench_queue: ZeroMQ not installed: peer skipped\n");
#endif
#ifndef BENCH_HAVE_BOOST
    printf("# bench_queue: Boost.Interprocess not installed: peer skipped\n");
#endif
    return 0;
}
