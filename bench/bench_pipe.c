/* bench/bench_pipe.c - mp_pipe against a raw pipe, a socketpair, a POSIX
 * message-queue pair and Python's multiprocessing.Pipe (bench/py/pipe.py,
 * send_bytes/recv_bytes), all alternating within each run:
 *
 *   rt64_cpuXY_median/_p99  round trip of a 64-byte message between a parent
 *                           pinned to CPU X and a child pinned to CPU Y (us)
 *   bulk64k_cpuXY           1 GiB one way in 64 KiB messages, sender on CPU X,
 *                           receiver on CPU Y, until the receiver has it all
 *                           (GB/s = 1e9 bytes/s)
 *
 * Peers are set up as a C programmer would: the raw pipe gets F_SETPIPE_SZ
 * 1 MiB for bulk; the socketpair is a plain SOCK_STREAM pair with default
 * buffers (the "naive loop"); the message queues hold 10 messages (the
 * default msg_max) of 64 bytes for latency and of the largest size the
 * system allows (msgsize_max, 8 KiB by default) for bulk, so that peer moves
 * 1 GiB in smaller messages and says so in its impl name.  Each measurement
 * runs in a fresh pair of processes; the peak RSS reported per impl is the
 * largest of those processes.
 *
 *   MP_BENCH_RUNS    runs (default 5, at least 3)
 *   MP_BENCH_RT      round trips per latency measurement (default 10000)
 *   MP_BENCH_BULK_MB MiB per bulk measurement (default 1024)
 *   MP_BENCH_NO_PY   set to skip the Python peer
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench.h"


enum impl { MPROC, RAW_PIPE, SOCKETPAIR, POSIX_MQ, PYTHON, NIMPL };
static const char *names[NIMPL] = { "mp_pipe", "raw_pipe", "socketpair", "posix_mq",
                                    "python_pipe" };

#define MSG_LAT 64
#define MSG_BULK (64 * 1024)

static int n_rt = 10000;
static size_t bulk_bytes = (size_t)1 << 30;
static long mq_bulk_size = 8192;

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_pipe: %s: %s\n", what, strerror(err < 0 ? -err : err));
    _exit(2);
}

/* ---- one channel per impl ------------------------------------------------------
 * Parent side p_*, child side c_*; for latency both directions are used. */
typedef struct chan {
    enum impl k;
    mp_conn *a, *b;    /* MPROC: parent a, child b */
    int up[2], dn[2];  /* RAW_PIPE: parent->child up, child->parent dn */
    int s[2];          /* SOCKETPAIR */
    mqd_t q_up, q_dn;  /* POSIX_MQ */
    long mq_size;
} chan;

static void chan_open(chan *ch, enum impl k, bool bulk)
{
    memset(ch, 0, sizeof *ch);
    ch->k = k;
    int rc;
    switch (k) {
    case MPROC:
        if ((rc = mp_pipe(&ch->a, &ch->b, true)) < 0)
            die("mp_pipe", rc);
        break;
    case RAW_PIPE:
        if (pipe(ch->up) || pipe(ch->dn))
            die("pipe", errno);
        if (bulk)
            (void)fcntl(ch->up[1], F_SETPIPE_SZ, 1 << 20);
        break;
    case SOCKETPAIR:
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, ch->s))
            die("socketpair", errno);
        break;
    case POSIX_MQ: {
        ch->mq_size = bulk ? mq_bulk_size : MSG_LAT;
        struct mq_attr at = { .mq_maxmsg = 10, .mq_msgsize = ch->mq_size };
        char name[64];
        snprintf(name, sizeof name, "/mp_bench_pipe_%d_up", (int)getpid());
        ch->q_up = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &at);
        if (ch->q_up == (mqd_t)-1)
            die("mq_open", errno);
        mq_unlink(name);
        snprintf(name, sizeof name, "/mp_bench_pipe_%d_dn", (int)getpid());
        ch->q_dn = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &at);
        if (ch->q_dn == (mqd_t)-1)
            die("mq_open", errno);
        mq_unlink(name);
        break;
    }
    default:
        break;
    }
}

static void rd_all(int fd, char *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            die("read", r < 0 ? errno : EPIPE);
        p += r;
        n -= (size_t)r;
    }
}

static void wr_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r <= 0)
            die("write", errno);
        p += r;
        n -= (size_t)r;
    }
}

/* Sends len bytes as one message, parent->child (up) or child->parent. */
static void ch_send(chan *ch, bool up, const char *m, size_t len)
{
    int rc;
    switch (ch->k) {
    case MPROC:
        if ((rc = mp_conn_send(up ? ch->a : ch->b, m, len)) < 0)
            die("mp_conn_send", rc);
        break;
    case RAW_PIPE:
        wr_all(up ? ch->up[1] : ch->dn[1], m, len);
        break;
    case SOCKETPAIR:
        wr_all(up ? ch->s[0] : ch->s[1], m, len);
        break;
    case POSIX_MQ:
        for (size_t off = 0; off < len; off += (size_t)ch->mq_size) {
            size_t n = len - off < (size_t)ch->mq_size ? len - off : (size_t)ch->mq_size;
            if (mq_send(up ? ch->q_up : ch->q_dn, m + off, n, 0) != 0)
                die("mq_send", errno);
        }
        break;
    default:
        break;
    }
}

static void ch_recv(chan *ch, bool up, char *m, size_t len)
{
    int rc;
    size_t got;
    switch (ch->k) {
    case MPROC:
        if ((rc = mp_conn_recv(up ? ch->b : ch->a, m, len, &got, MP_FOREVER)) < 0)
            die("mp_conn_recv", rc);
        if (got != len)
            die("mp_conn_recv: length", EBADMSG);
        break;
    case RAW_PIPE:
        rd_all(up ? ch->up[0] : ch->dn[0], m, len);
        break;
    case SOCKETPAIR:
        rd_all(up ? ch->s[1] : ch->s[0], m, len);
        break;
    case POSIX_MQ:
        for (size_t off = 0; off < len;) {
            ssize_t n = mq_receive(up ? ch->q_up : ch->q_dn, m + off, (size_t)ch->mq_size, NULL);
            if (n < 0)
                die("mq_receive", errno);
            off += (size_t)n;
        }
        break;
    default:
        break;
    }
}

/* ---- measurements: each runs in a driver process that reports its figures
 * and the peak RSS of itself and its child through a pipe. ---------------------- */

typedef struct result {
    double v[2]; /* latency: median, p99 (us); bulk: GB/s */
    long rss;    /* KiB */
} result;

static void lat_driver(enum impl k, int cpu_p, int cpu_c, result *res)
{
    chan ch;
    chan_open(&ch, k, false);
    int warm = 1000, n = n_rt;
    char m[MSG_LAT] = { 0 };
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        bench_pin(cpu_c);
        for (int i = 0; i < n + warm; i++) {
            ch_recv(&ch, true, m, sizeof m);
            ch_send(&ch, false, m, sizeof m);
        }
        _exit(0);
    }
    bench_pin(cpu_p);
    double *t = malloc(sizeof *t * (size_t)n);
    if (!t)
        die("malloc", ENOMEM);
    for (int i = 0; i < n + warm; i++) {
        int64_t t0 = bench_now_ns();
        ch_send(&ch, true, m, sizeof m);
        ch_recv(&ch, false, m, sizeof m);
        if (i >= warm)
            t[i - warm] = (double)(bench_now_ns() - t0) / 1000.0;
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("latency child", ECHILD);
    res->v[0] = bench_median(t, n);
    res->v[1] = bench_percentile(t, n, 99);
    free(t);
}

static void bulk_driver(enum impl k, int cpu_s, int cpu_r, result *res)
{
    chan ch;
    chan_open(&ch, k, true);
    int ack[2];
    if (pipe(ack))
        die("pipe", errno);
    size_t count = bulk_bytes / MSG_BULK;
    char *m = calloc(1, MSG_BULK);
    if (!m)
        die("calloc", ENOMEM);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        bench_pin(cpu_r);
        for (size_t i = 0; i < count; i++)
            ch_recv(&ch, true, m, MSG_BULK);
        wr_all(ack[1], "k", 1);
        _exit(0);
    }
    bench_pin(cpu_s);
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < count; i++)
        ch_send(&ch, true, m, MSG_BULK);
    char c;
    rd_all(ack[0], &c, 1);
    int64_t dt = bench_now_ns() - t0;
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("bulk child", ECHILD);
    res->v[0] = (double)(count * MSG_BULK) / (double)dt;
    free(m);
}

static const char *py_dir(void)
{
    return bench_py_dir();
}

/* Runs the Python peer once; reads the values of the metrics it prints. */
static void py_driver(bool bulk, int cpu_a, int cpu_b, result *res)
{
    char cmd[1024], want[2][64];
    char tag[16];
    snprintf(tag, sizeof tag, "cpu%d%d", cpu_a, cpu_b);
    if (bulk) {
        snprintf(cmd, sizeof cmd, "%s %s/pipe.py bulk %d %d %zu %d", bench_python(), py_dir(),
                 cpu_a, cpu_b, bulk_bytes, MSG_BULK);
        snprintf(want[0], sizeof want[0], " metric=bulk64k_%s ", tag);
        want[1][0] = '\0';
    } else {
        snprintf(cmd, sizeof cmd, "%s %s/pipe.py lat %d %d %d", bench_python(), py_dir(), cpu_a,
                 cpu_b, n_rt);
        snprintf(want[0], sizeof want[0], " metric=rt64_%s_median ", tag);
        snprintf(want[1], sizeof want[1], " metric=rt64_%s_p99 ", tag);
    }
    res->v[0] = res->v[1] = -1;
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *val = strstr(line, " value=");
        for (int i = 0; i < 2 && val; i++)
            if (want[i][0] && strstr(line, want[i]))
                res->v[i] = atof(val + 7);
    }
    if (pclose(f) != 0)
        res->v[0] = -1;
}

/* Forks a driver for one measurement and collects its result. */
static result measure(enum impl k, bool bulk, int cpu_a, int cpu_b)
{
    int fds[2];
    if (pipe(fds))
        die("pipe", errno);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        close(fds[0]);
        result r = { { -1, -1 }, 0 };
        if (k == PYTHON)
            py_driver(bulk, cpu_a, cpu_b, &r);
        else if (bulk)
            bulk_driver(k, cpu_a, cpu_b, &r);
        else
            lat_driver(k, cpu_a, cpu_b, &r);
        struct rusage self, kids;
        getrusage(RUSAGE_SELF, &self);
        getrusage(RUSAGE_CHILDREN, &kids);
        r.rss = self.ru_maxrss > kids.ru_maxrss ? self.ru_maxrss : kids.ru_maxrss;
        wr_all(fds[1], (const char *)&r, sizeof r);
        _exit(0);
    }
    close(fds[1]);
    result r = { { -1, -1 }, 0 };
    rd_all(fds[0], (char *)&r, sizeof r);
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return r;
}

#define MAXRUNS 32

int main(void)
{
    int runs = bench_runs();
    if (runs > MAXRUNS)
        runs = MAXRUNS;
    const char *e;
    if ((e = getenv("MP_BENCH_RT")) && atoi(e) > 0)
        n_rt = atoi(e);
    if ((e = getenv("MP_BENCH_BULK_MB")) && atol(e) > 0)
        bulk_bytes = (size_t)atol(e) << 20;
    bool py = getenv("MP_BENCH_NO_PY") == NULL;
    FILE *f = fopen("/proc/sys/fs/mqueue/msgsize_max", "r");
    if (f) {
        long v;
        if (fscanf(f, "%ld", &v) == 1 && v > 0)
            mq_bulk_size = v < MSG_BULK ? v : MSG_BULK;
        fclose(f);
    }
    printf("# bench_pipe: %d runs, %d round trips each, %zu MiB bulk in 64 KiB messages "
           "(posix_mq: %ld-byte messages)\n",
           runs, n_rt, bulk_bytes >> 20, mq_bulk_size);

    /* the measurements: 0,1 latency on CPUs 0,0 and 0,1; 2,3 bulk on 0,1 and 0,0 */
    static const struct { bool bulk; int a, b; const char *metric; } cfg[] = {
        { false, 0, 0, "rt64_cpu00" },
        { false, 0, 1, "rt64_cpu01" },
        { true, 0, 1, "bulk64k_cpu01" },
        { true, 0, 0, "bulk64k_cpu00" },
    };
    enum { NCFG = sizeof cfg / sizeof cfg[0] };
    static double val[NCFG][NIMPL][2][MAXRUNS];
    long rss[NIMPL] = { 0 };
    bool have[NIMPL];
    for (int k = 0; k < NIMPL; k++)
        have[k] = k != PYTHON || py;

    for (int r = 0; r < runs; r++) {
        for (int c = 0; c < NCFG; c++) {
            for (int j = 0; j < NIMPL; j++) {
                int k = (j + r) % NIMPL; /* no impl always goes first */
                if (!have[k])
                    continue;
                result res = measure((enum impl)k, cfg[c].bulk, cfg[c].a, cfg[c].b);
                if (res.v[0] < 0) {
                    printf("# %s failed (%s); skipping it\n", names[k], cfg[c].metric);
                    have[k] = false;
                    continue;
                }
                val[c][k][0][r] = res.v[0];
                val[c][k][1][r] = res.v[1];
                if (res.rss > rss[k])
                    rss[k] = res.rss;
            }
        }
    }

    char metric[64];
    for (int c = 0; c < NCFG; c++) {
        double med[NIMPL][2];
        for (int k = 0; k < NIMPL; k++) {
            if (!have[k])
                continue;
            med[k][0] = bench_median(val[c][k][0], runs);
            med[k][1] = bench_median(val[c][k][1], runs);
            if (cfg[c].bulk) {
                bench_report("pipe", names[k], cfg[c].metric, med[k][0], "GB/s");
            } else {
                snprintf(metric, sizeof metric, "%s_median", cfg[c].metric);
                bench_report("pipe", names[k], metric, med[k][0], "us");
                snprintf(metric, sizeof metric, "%s_p99", cfg[c].metric);
                bench_report("pipe", names[k], metric, med[k][1], "us");
            }
        }
        for (int k = 1; k < NIMPL; k++) {
            if (!have[k] || !have[MPROC])
                continue;
            const char *peer = k == POSIX_MQ && cfg[c].bulk ? "posix_mq_small_msgs" : names[k];
            if (cfg[c].bulk) {
                bench_ratio("pipe", cfg[c].metric, "mp_pipe", med[MPROC][0], peer, med[k][0], 1);
            } else {
                snprintf(metric, sizeof metric, "%s_median", cfg[c].metric);
                bench_ratio("pipe", metric, "mp_pipe", med[MPROC][0], peer, med[k][0], 0);
                snprintf(metric, sizeof metric, "%s_p99", cfg[c].metric);
                bench_ratio("pipe", metric, "mp_pipe", med[MPROC][1], peer, med[k][1], 0);
            }
        }
    }
    for (int k = 0; k < NIMPL; k++)
        if (have[k])
            printf("@rss bench=pipe impl=%s value=%ld unit=KiB\n", names[k], rss[k]);
    return have[MPROC] ? 0 : 1;
}
