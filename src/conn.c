/* src/conn.c - Pipe and connections: framed messages over a packet pipe
 * (small messages, ordering) and a SOCK_SEQPACKET socket (large payloads,
 * file descriptors).
 *
 * Design.  Each direction of a connection has its own pipe, opened in packet
 * mode (pipe2 O_DIRECT): every write of at most PIPE_BUF bytes is one atomic
 * packet and every read returns exactly one packet.  Every message starts
 * with one packet, its frame:
 *
 *   INLINE  frame + payload in the same packet (payload <= INLINE_MAX bytes).
 *           One writev, one read: the latency path.  Atomic, so several
 *           senders never interleave and a killed sender never tears one.
 *   BULK    frame only; the payload travels on the socket as datagrams
 *           ("chunks") of at most CHUNK_MAX bytes, each headed by the
 *           message's id and the chunk's offset.  Unix SEQPACKET datagrams
 *           are atomic too, and the socket moves bulk data about twice as
 *           fast as a pipe here (see bench/bench_pipe.c).
 *   FD      frame only; one chunk carries the descriptor (SCM_RIGHTS).
 *
 * The pipe orders everything: a receiver reads a frame, then (for BULK and
 * FD) the chunks with that frame's id.  The sender writes the frame as late
 * as it can: after the last chunk when the payload fits in the socket, so
 * that a frame the receiver polls means a message it can take without
 * waiting; or, for a payload the socket cannot hold, just before the first
 * chunk that would block, so that the receiver can start draining it (a
 * sender never blocks on the socket before its frame is out: no deadlock).  Ids come from a per-direction counter
 * in a small shared page, taken under the direction's send lock, so they
 * grow in stream order.  That makes a torn message (its sender killed after
 * the frame, before the last chunk) detectable without any further shared
 * state (chunks of a sender killed before its frame are orphans that the
 * receiver skips as stale), and a receiver waiting for the rest of an item
 * notices that no live thread holds the send lock any more (the robust
 * lock's owner field is cleared by the kernel when its owner dies): the receiver meets a chunk with a larger id (the next message has
 * started: it keeps that chunk, reports -EBADMSG and goes on), a chunk with a
 * smaller id (left over from a message dropped earlier: skipped), an ABORT
 * chunk (the sender gave up: -EBADMSG), a send lock without a live owner and
 * nothing more queued (-EBADMSG), or the socket's end of file (every copy of
 * the peer end is closed: -ECONNRESET).  A payload is never delivered
 * unless every byte of it came in chunks of its own id at the right offsets.
 *
 * Why not one stream: a byte stream cannot be resynchronised after a sender
 * dies half-way through a frame, and a pipe alone moves large messages at
 * half the socket's speed; a socket alone costs ~60% more latency than a
 * pipe for small messages on one CPU.
 *
 * SIGPIPE: the socket uses MSG_NOSIGNAL.  A pipe write cannot, so SIGPIPE is
 * blocked in the calling thread around it, and a SIGPIPE the write raised
 * is consumed with sigtimedwait unless one was already pending before (the
 * caller's own); the mask is then restored.  The disposition is never
 * touched.
 *
 * Waiting.  The descriptors stay in blocking mode; a non-blocking attempt
 * uses RWF_NOWAIT (pipes, Linux >= 5.8 or so, probed at mp_pipe; without it
 * the pipe ends are made O_NONBLOCK) or MSG_DONTWAIT (socket), and a wait goes
 * through mp__wait_poll.  One exception keeps the latency path at one system
 * call: when the wait has no deadline and no mproc signal handler is
 * installed (mp__sig_fd < 0 and mp__sig_run NULL), there is nothing
 * mp__wait_poll could run, so the call blocks in read/write/sendmsg itself,
 * and an EINTR there falls back to the checked path.  Receiving chunks never
 * blocks in the system call: that wait looks at the sender every
 * ALIVE_CHECK_MS.
 *
 * Receive state is per handle: a frame read from the pipe but not yet
 * delivered (after -EMSGSIZE, or a timeout in the middle of a large
 * message), the part of its payload already received, and one chunk read
 * ahead from the socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal/conn.h"
#include "internal/core.h"
#include "mproc/conn.h"
#include "mproc/sync.h"

#define CONN_MAGIC  0x6d70636eu /* "mpcn": a live handle */
#define FRAME_MAGIC 0x4d504652u /* every frame packet */
#define CHUNK_MAGIC 0x4d504348u /* every socket datagram */

enum { K_INLINE = 1, K_BULK = 2, K_FD = 3 };
enum { CH_DATA = 0, CH_FD = 1, CH_ABORT = 2 };

#define PKT_MAX    PIPE_BUF                       /* one atomic packet */
#define INLINE_MAX (PKT_MAX - sizeof(struct frame)) /* 4064 bytes */
#define CHUNK_MAX  (64 * 1024)                    /* payload per datagram */
#define SOCK_BUF   (4 * 1024 * 1024)              /* SO_SNDBUF asked for */
#define PIPE_SIZE  (256 * 1024)                   /* F_SETPIPE_SZ: 64 packets */

/* The packet that starts every message.  check = frame_check(...) catches
 * anything that is not a frame written by this code. */
struct frame {
    uint32_t magic;
    uint32_t kind;  /* K_INLINE, K_BULK, K_FD */
    uint64_t len;   /* payload bytes */
    uint64_t id;    /* BULK/FD: the id its chunks carry; INLINE: 0 */
    uint64_t check;
};

/* The header of every socket datagram. */
struct chunk {
    uint32_t magic;
    uint32_t type; /* CH_DATA, CH_FD (0 data bytes + SCM_RIGHTS), CH_ABORT */
    uint64_t id;   /* the frame's id */
    uint64_t off;  /* offset of this chunk's data in the payload */
};

/* The shared page, one per mp_pipe, mapped MAP_SHARED into every process
 * that inherits the pair.  dir[0] is the direction in which end a sends,
 * dir[1] the one in which end b sends.
 *   lock     serialises the BULK and FD sends of that direction (an INLINE
 *            send is a single atomic packet and takes no lock).
 *   next_id  id of the next BULK/FD item: taken (fetch-add) under lock, so
 *            ids grow in stream order; starts at 1, only grows (wraps
 *            after 2^64 items, compared as a signed difference). */
struct conn_dir {
    mp_lock lock;
    uint64_t next_id;
} __attribute__((aligned(MP__CACHELINE)));

struct conn_shared {
    struct conn_dir dir[2];
    uint32_t robust; /* 1 if mp_lock works here (see sender_alive), else 0 */
};

/* The page's process-local owner: both handles of a pair live in the same
 * process until a fork; each holds a reference. */
struct shared_ref {
    struct conn_shared *page;
    int refs; /* atomic: the two handles may be closed from two threads */
};

struct stash {
    bool have;
    struct chunk h;
    char *data;
    size_t len;
    int fd; /* CH_FD: the descriptor it carried, else -1 */
};

struct mp_conn {
    uint32_t magic; /* CONN_MAGIC while open: a cheap guard, not a promise */
    int rfd;        /* read end of the incoming pipe, -1 on a send-only end */
    int wfd;        /* write end of the outgoing pipe, -1 on a receive-only end */
    int sfd;        /* this end's socket: chunks in both directions */
    bool duplex;
    bool nowait;     /* RWF_NOWAIT works on the pipes (else they are O_NONBLOCK) */
    size_t chunk;    /* payload bytes per datagram sent: CHUNK_MAX, or less
                        if the socket's send buffer is small */
    struct conn_dir *sdir; /* the direction this end sends in (NULL: none) */
    struct conn_dir *rdir; /* the direction it receives in (NULL: none) */
    struct shared_ref *sh;

    /* receive state (per process, see the header comment) */
    bool have_frame; /* fr/pkt hold a frame read but not delivered */
    struct frame fr;
    size_t done;     /* BULK: payload bytes received so far */
    char *part;      /* BULK: where they are kept between calls, or NULL */
    char *spare;     /* CHUNK_MAX bytes: the tail of a datagram that may not
                        fit the destination, allocated on first need */
    struct stash stash;
    char pkt[PKT_MAX];
};

/* ---- helpers -------------------------------------------------------------- */

static uint64_t frame_check(const struct frame *f)
{
    uint64_t x = ((uint64_t)f->magic << 32 | f->kind) ^ 0x9e3779b97f4a7c15ull;
    x = (x ^ f->len) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ f->id) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static struct frame make_frame(uint32_t kind, uint64_t len, uint64_t id)
{
    struct frame f = { .magic = FRAME_MAGIC, .kind = kind, .len = len, .id = id };
    f.check = frame_check(&f);
    return f;
}

static bool valid(const mp_conn *c)
{
    return c != NULL && c->magic == CONN_MAGIC;
}

/* True when a wait may block inside the system call itself: no deadline and
 * no mproc signal handler that mp__wait_poll would have to run. */
static bool may_block(const mp__deadline *dl)
{
    return mp__deadline_forever(dl) && __atomic_load_n(&mp__sig_fd, __ATOMIC_ACQUIRE) < 0 &&
           __atomic_load_n(&mp__sig_run, __ATOMIC_ACQUIRE) == NULL;
}

/* After EAGAIN: waits for events on fd through the common wait path. */
static int wait_fd(int fd, short events, const mp__deadline *dl)
{
    struct pollfd p = { .fd = fd, .events = events };
    int rc = mp__wait_poll(&p, 1, dl);
    return rc < 0 ? rc : 0;
}

/* After EINTR in a blocking call: runs pending handlers, 0 or -EINTR. */
static int after_eintr(void)
{
    return mp__signal_check();
}

static void stash_clear(struct stash *s)
{
    free(s->data);
    if (s->fd >= 0)
        mp__close(s->fd);
    *s = (struct stash){ .fd = -1 };
}

static void drop_message(mp_conn *c)
{
    free(c->part);
    c->part = NULL;
    c->done = 0;
    c->have_frame = false;
}

/* ---- pipe packets ----------------------------------------------------------- */

/* One atomic packet (<= PKT_MAX bytes, contiguous: write(2) is cheaper than
 * writev(2) on this path) on the outgoing pipe, SIGPIPE-free:
 * 0 or -EPIPE/-EINTR/-errno.  Sends never time out. */
static int pipe_send(mp_conn *c, const void *pkt, size_t total)
{
    sigset_t pipeset, old;
    sigemptyset(&pipeset);
    sigaddset(&pipeset, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &pipeset, &old) != 0)
        mp__panic("pthread_sigmask");
    bool was_blocked = sigismember(&old, SIGPIPE);
    bool was_pending = false;
    if (was_blocked) {
        /* Only a caller that blocks SIGPIPE itself can have one pending:
         * that one is the caller's and must survive. */
        sigset_t pend;
        sigpending(&pend);
        was_pending = sigismember(&pend, SIGPIPE);
    }
    mp__deadline dl = mp__deadline_from_ms(MP_FOREVER);
    int rc;
    for (;;) {
        ssize_t n;
        if (may_block(&dl) || !c->nowait)
            n = write(c->wfd, pkt, total);
        else
            n = pwritev2(c->wfd, &(struct iovec){ (void *)pkt, total }, 1, -1, RWF_NOWAIT);
        if (n >= 0) {
            if ((size_t)n != total) /* a packet write is atomic */
                mp__panic("short pipe packet write %zd of %zu", n, total);
            rc = 0;
            break;
        }
        rc = -errno;
        if (rc == -EINTR) {
            if ((rc = after_eintr()) < 0)
                break;
            continue;
        }
        if (rc != -EAGAIN)
            break;
        if ((rc = wait_fd(c->wfd, POLLOUT, &dl)) < 0)
            break;
    }
    if (rc == -EPIPE && !was_pending) {
        static const struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipeset, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    if (!was_blocked && pthread_sigmask(SIG_UNBLOCK, &pipeset, NULL) != 0)
        mp__panic("pthread_sigmask");
    return rc;
}

/* Reads the next frame packet into c->fr/c->pkt.  0, MP_EOF, -EPROTO (a
 * packet that is no frame: consumed; the packet stream stays aligned),
 * wait codes or -errno. */
static int read_frame(mp_conn *c, const mp__deadline *dl)
{
    for (;;) {
        bool block = may_block(dl);
        ssize_t n;
        if (block || !c->nowait)
            n = read(c->rfd, c->pkt, sizeof c->pkt);
        else
            n = preadv2(c->rfd, &(struct iovec){ c->pkt, sizeof c->pkt }, 1, -1, RWF_NOWAIT);
        if (n == 0)
            return MP_EOF;
        if (n > 0) {
            struct frame f;
            if ((size_t)n < sizeof f)
                return -EPROTO;
            memcpy(&f, c->pkt, sizeof f);
            if (f.magic != FRAME_MAGIC || f.check != frame_check(&f))
                return -EPROTO;
            bool ok = f.kind == K_INLINE ? f.len == (size_t)n - sizeof f
                    : (f.kind == K_BULK || f.kind == K_FD) && (size_t)n == sizeof f &&
                          f.len <= SSIZE_MAX;
            if (!ok)
                return -EPROTO;
            c->fr = f;
            c->have_frame = true;
            c->done = 0;
            return 0;
        }
        int rc = -errno;
        if (rc == -EINTR) {
            if ((rc = after_eintr()) < 0)
                return rc;
            continue;
        }
        if (rc != -EAGAIN)
            return rc;
        if ((rc = wait_fd(c->rfd, POLLIN, dl)) < 0)
            return rc;
    }
}

/* ---- socket chunks ------------------------------------------------------------ */

/* Sends one datagram (header + len bytes of data, or the descriptor fd).
 * 0, -EPIPE, -EINTR or -errno; with nowait, -EAGAIN instead of waiting for
 * room.  Never times out. */
static int chunk_send(mp_conn *c, uint32_t type, uint64_t id, uint64_t off, const void *data,
                      size_t len, int fd, bool nowait)
{
    struct chunk h = { .magic = CHUNK_MAGIC, .type = type, .id = id, .off = off };
    struct iovec iov[2] = { { &h, sizeof h }, { (void *)data, len } };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    mp__deadline dl = mp__deadline_from_ms(MP_FOREVER);
    for (;;) {
        bool block = !nowait && may_block(&dl);
        ssize_t n = sendmsg(c->sfd, &m, MSG_NOSIGNAL | (block ? 0 : MSG_DONTWAIT));
        if (n >= 0)
            return 0; /* a datagram goes whole or not at all */
        int rc = -errno;
        if (rc == -EINTR) {
            if ((rc = after_eintr()) < 0)
                return rc;
            continue;
        }
        if (rc != -EAGAIN || nowait)
            return rc;
        if ((rc = wait_fd(c->sfd, POLLOUT, &dl)) < 0)
            return rc;
    }
}

/* Classifies a chunk against what the receiver expects (id, off, type):
 * 1 it is the expected one; 0 stale (skip it); -EBADMSG the expected item is
 * lost (keep the chunk if it belongs to a later item: *keep). */
static int classify(const struct chunk *h, size_t datalen, uint64_t id, uint64_t off,
                    size_t want, bool want_fd, bool has_fd, bool *keep)
{
    int64_t d = (int64_t)(h->id - id);
    *keep = false;
    if (d > 0) {
        *keep = true;
        return -EBADMSG;
    }
    if (d < 0)
        return 0;
    if (h->type == CH_ABORT)
        return -EBADMSG;
    if (want_fd ? h->type == CH_FD && has_fd && datalen == 0
                : h->type == CH_DATA && h->off == off && datalen > 0 && datalen <= want)
        return 1;
    return -EBADMSG; /* our id, but not what was due: the item is broken */
}

/* Whether a live thread holds the send lock of the direction c receives in,
 * i.e. may still be sending the item c waits for.  The lock word's low 30
 * bits are its owner's thread id; the kernel clears them (and sets
 * OWNER_DIED) when the owner dies holding it (mproc/sync.h).  Without
 * robust locks there is no telling: assume alive. */
static bool sender_alive(const mp_conn *c)
{
    if (!c->sh->page->robust)
        return true;
    uint32_t st = __atomic_load_n(&c->rdir->lock.state, __ATOMIC_ACQUIRE);
    return (st & 0x3fffffffu) != 0;
}

/* While a receive waits for the rest of an item, it looks this often whether
 * its sender is still there. */
#define ALIVE_CHECK_MS 100

/* Receives the next chunk of item id at offset off: its data into dst (at
 * most want bytes) or, for an FD item (fd_out != NULL), its descriptor.
 * Returns the data length (0 for an FD item), -EBADMSG (the item is lost),
 * -EMFILE (an FD item whose descriptor the kernel had no slot for: lost),
 * -ECONNRESET (end of file on the socket), wait codes or -errno. */
static int chunk_recv(mp_conn *c, uint64_t id, uint64_t off, char *dst, size_t want,
                      int *fd_out, const mp__deadline *dl)
{
    bool keep;
    if (c->stash.have) {
        struct stash *s = &c->stash;
        int k = classify(&s->h, s->len, id, off, want, fd_out != NULL, s->fd >= 0, &keep);
        if (k == 1) {
            int n = (int)s->len;
            if (fd_out) {
                *fd_out = s->fd;
                s->fd = -1;
            } else {
                memcpy(dst, s->data, s->len);
            }
            stash_clear(s);
            return n;
        }
        if (!keep)
            stash_clear(s);
        if (k < 0)
            return k;
    }
    if ((fd_out || want < CHUNK_MAX) && !c->spare) {
        c->spare = malloc(CHUNK_MAX);
        if (!c->spare)
            return -ENOMEM;
    }
    bool last_try = false;
    for (;;) {
        struct chunk h;
        struct iovec iov[3] = { { &h, sizeof h } };
        int niov = 1;
        if (want > 0)
            iov[niov++] = (struct iovec){ dst, want };
        if (want < CHUNK_MAX) /* room for a datagram that is not ours */
            iov[niov++] = (struct iovec){ c->spare, CHUNK_MAX - want };
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(4 * sizeof(int))];
        } ctl;
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)niov,
                            .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
        /* Never blocking inside recvmsg: a wait must look at the sender
         * now and then (below). */
        ssize_t n = recvmsg(c->sfd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0) {
            int rc = -errno;
            if (rc == -EINTR) {
                if ((rc = after_eintr()) < 0)
                    return rc;
                continue;
            }
            if (rc != -EAGAIN)
                return rc;
            if (last_try)
                return -EBADMSG; /* no sender, and nothing left of the item */
            /* Wait in slices: a sender killed half-way through the item
             * (the end kept open by other processes) sends no more and
             * closes nothing, but leaves the send lock without a live
             * owner.  Once it has none, every chunk sent under it is
             * already queued: one last look, then the item is torn. */
            mp__deadline slice = mp__deadline_from_ms(ALIVE_CHECK_MS);
            bool sliced = !dl->nowait && slice.at_ns < dl->at_ns;
            rc = wait_fd(c->sfd, POLLIN, sliced ? &slice : dl);
            if (rc == -ETIMEDOUT && sliced) {
                last_try = !sender_alive(c);
                continue;
            }
            if (rc < 0)
                return rc;
            continue;
        }
        last_try = false;
        if (n == 0)
            return -ECONNRESET;
        /* Collect any descriptor first, so that none leaks whatever the
         * chunk turns out to be. */
        int fd = -1;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int x;
                memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof x);
                if (fd < 0)
                    fd = x;
                else
                    mp__close(x);
            }
        }
        if ((size_t)n < sizeof h || h.magic != CHUNK_MAGIC || (m.msg_flags & MSG_TRUNC)) {
            mp__close(fd); /* not ours, or oversized: skip it */
            continue;
        }
        size_t datalen = (size_t)n - sizeof h;
        if (fd_out && fd < 0 && (m.msg_flags & MSG_CTRUNC) && h.type == CH_FD && h.id == id)
            return -EMFILE; /* ours, but the kernel had no slot for its descriptor */
        int k = classify(&h, datalen, id, off, want, fd_out != NULL, fd >= 0, &keep);
        if (k == 1) {
            if (fd_out)
                *fd_out = fd;
            return (int)datalen;
        }
        if (k == 0) {
            mp__close(fd);
            continue;
        }
        if (keep) {
            /* The next item has begun: keep its first chunk for it. */
            struct stash *s = &c->stash;
            s->data = malloc(datalen ? datalen : 1);
            if (s->data) {
                size_t first = datalen < want ? datalen : want;
                if (first)
                    memcpy(s->data, dst, first);
                if (datalen > first)
                    memcpy(s->data + first, c->spare, datalen - first);
                s->have = true;
                s->h = h;
                s->len = datalen;
                s->fd = fd;
                fd = -1;
            }
            /* Without memory the next item is lost too: its receiver will
             * find its chunk missing and report it. */
        }
        mp__close(fd);
        return k;
    }
}

/* ---- the shared page ------------------------------------------------------------ */

static struct shared_ref *shared_new(void)
{
    struct shared_ref *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    void *p = mmap(NULL, sizeof(struct conn_shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        free(r);
        return NULL;
    }
    r->page = p;
    r->refs = 2;
    r->page->robust = 1;
    for (int i = 0; i < 2; i++) {
        int rc = mp_lock_init(&r->page->dir[i].lock);
        if (rc == -ENOTSUP)
            r->page->robust = 0;
        else if (rc < 0)
            mp__panic("mp_lock_init: %d", rc);
        r->page->dir[i].next_id = 1;
    }
    return r;
}

static void shared_unref(struct shared_ref *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        munmap(r->page, sizeof(struct conn_shared));
        free(r);
    }
}

/* Takes this end's send lock for a BULK/FD item.  A sender that died
 * holding it (-EOWNERDEAD) left a torn item behind; the receiver detects
 * and reports that by itself (ids), so the lock is simply usable again. */
static int send_lock(mp_conn *c)
{
    int rc = mp_lock_acquire(&c->sdir->lock, MP_FOREVER);
    if (rc == -EOWNERDEAD || rc == -ENOTSUP)
        return 0;
    return rc;
}

static void send_unlock(mp_conn *c)
{
    int rc = mp_lock_release(&c->sdir->lock);
    if (rc < 0 && rc != -ENOTSUP)
        mp__panic("mp_lock_release: %d", rc);
}

/* ---- public API ------------------------------------------------------------------- */

bool mp__conn_no_rwf_nowait;

static mp_conn *conn_new(struct shared_ref *sh, bool duplex, bool nowait, size_t chunk)
{
    mp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->magic = CONN_MAGIC;
    c->rfd = c->wfd = c->sfd = -1;
    c->duplex = duplex;
    c->nowait = nowait;
    c->chunk = chunk;
    c->sh = sh;
    c->stash.fd = -1;
    return c;
}

static int make_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC | O_DIRECT) != 0)
        return -errno;
    /* More packet slots than the default 16 (a packet takes a slot
     * whatever its size).  Modest, because the size counts against the
     * user's pipe quota (fs.pipe-user-pages-soft) at once; refused beyond
     * it, which only costs throughput. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE);
    return 0;
}

int mp_pipe(mp_conn **a, mp_conn **b, bool duplex)
{
    if (!a || !b)
        return -EINVAL;
    int p1[2] = { -1, -1 }, p2[2] = { -1, -1 }, s[2] = { -1, -1 };
    int rc;
    struct shared_ref *sh = NULL;
    mp_conn *ca = NULL, *cb = NULL;

    if ((rc = make_pipe(p1)) < 0) /* b -> a */
        goto fail;
    if (duplex && (rc = make_pipe(p2)) < 0) /* a -> b */
        goto fail;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) != 0) {
        rc = -errno;
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        int sz = SOCK_BUF; /* capped by net.core.wmem_max: fine either way */
        (void)setsockopt(s[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        (void)setsockopt(s[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    /* A datagram must fit the send buffer whole; keep a chunk to a quarter
     * of it where an administrator made it small. */
    int sndbuf = 0;
    socklen_t optlen = sizeof sndbuf;
    size_t chunk = CHUNK_MAX;
    if (getsockopt(s[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, &optlen) == 0 &&
        (size_t)sndbuf / 4 < chunk)
        chunk = (size_t)sndbuf / 4 < 1024 ? 1024 : (size_t)sndbuf / 4;
    /* Probe RWF_NOWAIT on an empty pipe: EAGAIN means supported. */
    char probe;
    bool nowait = preadv2(p1[0], &(struct iovec){ &probe, 1 }, 1, -1, RWF_NOWAIT) < 0 &&
                  errno == EAGAIN && !__atomic_load_n(&mp__conn_no_rwf_nowait, __ATOMIC_RELAXED);
    if (!nowait) {
        int all[4] = { p1[0], p1[1], p2[0], p2[1] };
        for (int i = 0; i < 4; i++)
            if (all[i] >= 0 && fcntl(all[i], F_SETFL, fcntl(all[i], F_GETFL) | O_NONBLOCK) != 0) {
                rc = -errno;
                goto fail;
            }
    }
    rc = -ENOMEM;
    if (!(sh = shared_new()))
        goto fail;
    ca = conn_new(sh, duplex, nowait, chunk);
    cb = conn_new(sh, duplex, nowait, chunk);
    if (!ca || !cb)
        goto fail;
    ca->rfd = p1[0];
    ca->sfd = s[0];
    ca->rdir = &sh->page->dir[1];
    cb->wfd = p1[1];
    cb->sfd = s[1];
    cb->sdir = &sh->page->dir[1];
    if (duplex) {
        ca->wfd = p2[1];
        ca->sdir = &sh->page->dir[0];
        cb->rfd = p2[0];
        cb->rdir = &sh->page->dir[0];
    }
    *a = ca;
    *b = cb;
    return 0;

fail:
    free(ca);
    free(cb);
    if (sh) {
        munmap(sh->page, sizeof(struct conn_shared));
        free(sh);
    }
    int all[6] = { p1[0], p1[1], p2[0], p2[1], s[0], s[1] };
    for (int i = 0; i < 6; i++)
        mp__close(all[i]);
    return rc;
}

/* Sends a BULK message or an FD item under the send lock. */
static int send_item(mp_conn *c, uint32_t kind, const char *msg, size_t len, int fd)
{
    int rc = send_lock(c);
    if (rc < 0)
        return rc;
    uint64_t id = __atomic_fetch_add(&c->sdir->next_id, 1, __ATOMIC_RELAXED);
    struct frame f = make_frame(kind, len, id);
    /* The frame goes as late as possible: after the last chunk when the
     * whole payload fits in the socket (then a receiver that polls the
     * frame never waits for the rest), or just before the first chunk that
     * would block (then the receiver can make room: never a deadlock). */
    bool framed = false;
    size_t off = 0;
    do {
        size_t n = len - off < c->chunk ? len - off : c->chunk;
        rc = kind == K_FD ? chunk_send(c, CH_FD, id, 0, NULL, 0, fd, !framed)
                          : chunk_send(c, CH_DATA, id, off, msg + off, n, -1, !framed);
        if (rc == -EAGAIN && !framed) {
            if ((rc = pipe_send(c, &f, sizeof f)) < 0)
                break;
            framed = true;
            continue; /* the same chunk again, now allowed to wait */
        }
        off += n;
    } while (rc == 0 && off < len);
    if (rc == 0 && !framed)
        rc = pipe_send(c, &f, sizeof f);
    else if (rc < 0 && rc != -EPIPE && framed) {
        /* Interrupted or failed half-way (-EINTR, -EFAULT, ...) after the
         * frame: tell the receiver now rather than leave it waiting for the
         * rest.  If even that cannot go, it finds out from the next item.
         * Without a frame the chunks sent are orphans the receiver skips. */
        struct chunk h = { .magic = CHUNK_MAGIC, .type = CH_ABORT, .id = id };
        (void)send(c->sfd, &h, sizeof h, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    send_unlock(c);
    return rc;
}

int mp_conn_send(mp_conn *c, const void *msg, size_t len)
{
    if (!valid(c))
        return -EINVAL;
    if (c->wfd < 0)
        return -EBADF;
    if (!msg && len > 0)
        return -EINVAL;
    if (len > SSIZE_MAX)
        return -EMSGSIZE;
    if (len <= INLINE_MAX) {
        union {
            struct frame f;
            char b[PKT_MAX];
        } pkt;
        pkt.f = make_frame(K_INLINE, len, 0);
        if (len)
            memcpy(pkt.b + sizeof pkt.f, msg, len);
        return pipe_send(c, &pkt, sizeof pkt.f + len);
    }
    return send_item(c, K_BULK, msg, len, -1);
}

int mp_conn_send_fd(mp_conn *c, int fd)
{
    if (!valid(c))
        return -EINVAL;
    if (!c->duplex)
        return -ENOTSUP;
    if (c->wfd < 0)
        return -EBADF;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    return send_item(c, K_FD, NULL, 0, fd);
}

/* Receives the payload of the current BULK frame into dst. */
static int recv_bulk(mp_conn *c, char *dst, const mp__deadline *dl)
{
    while (c->done < c->fr.len) {
        size_t want = c->fr.len - c->done;
        if (want > CHUNK_MAX)
            want = CHUNK_MAX;
        int n = chunk_recv(c, c->fr.id, c->done, dst + c->done, want, NULL, dl);
        if (n < 0)
            return n;
        c->done += (size_t)n;
    }
    return 0;
}

/* The receive path of mp_conn_recv (msgp NULL) and mp_conn_recv_alloc. */
static int recv_msg(mp_conn *c, void *buf, size_t cap, size_t *len, void **msgp, int timeout_ms)
{
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    if (!valid(c) || !len || (!msgp && !buf && cap > 0))
        return -EINVAL;
    if (c->rfd < 0)
        return -EBADF;
    int rc;
    if (!c->have_frame && (rc = read_frame(c, &dl)) < 0)
        return rc;
    const struct frame *f = &c->fr;
    if (f->kind == K_FD)
        return -EPROTO; /* kept: the caller should use mp_conn_recv_fd */
    if (!msgp && f->len > cap) {
        *len = f->len;
        return -EMSGSIZE;
    }
    size_t n = f->len;
    if (f->kind == K_INLINE) {
        char *dst = buf;
        if (msgp && !(dst = malloc(n ? n : 1)))
            return -ENOMEM;
        if (n)
            memcpy(dst, c->pkt + sizeof(struct frame), n);
        c->have_frame = false;
        if (msgp)
            *msgp = dst;
        *len = n;
        return 0;
    }
    char *dst = c->part;
    if (!dst && msgp && !(dst = c->part = malloc(n)))
        return -ENOMEM;
    if (!dst)
        dst = buf;
    rc = recv_bulk(c, dst, &dl);
    if (rc == 0) {
        if (msgp) {
            *msgp = c->part;
            c->part = NULL;
        } else if (c->part) {
            memcpy(buf, c->part, n);
        }
        drop_message(c);
        *len = n;
        return 0;
    }
    if (rc == -EBADMSG || rc == -ECONNRESET) {
        drop_message(c);
        return rc;
    }
    /* Expired, interrupted or out of memory half-way: keep what came. */
    if (dst == buf && c->done > 0) {
        if (!(c->part = malloc(n))) {
            drop_message(c); /* its rest is skipped as stale later */
            return -ENOMEM;
        }
        memcpy(c->part, buf, c->done);
    }
    return rc;
}

int mp_conn_recv(mp_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms)
{
    return recv_msg(c, buf, cap, len, NULL, timeout_ms);
}

int mp_conn_recv_alloc(mp_conn *c, void **msg, size_t *len, int timeout_ms)
{
    if (!msg)
        return -EINVAL;
    return recv_msg(c, NULL, 0, len, msg, timeout_ms);
}

int mp_conn_recv_fd(mp_conn *c, int *fd, int timeout_ms)
{
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    if (!valid(c) || !fd)
        return -EINVAL;
    if (!c->duplex)
        return -ENOTSUP;
    if (c->rfd < 0)
        return -EBADF;
    int rc;
    if (!c->have_frame && (rc = read_frame(c, &dl)) < 0)
        return rc;
    if (c->fr.kind != K_FD)
        return -EPROTO; /* a message is next: kept for mp_conn_recv */
    int got = -1;
    rc = chunk_recv(c, c->fr.id, 0, NULL, 0, &got, &dl);
    if (rc < 0) {
        if (rc == -EBADMSG || rc == -ECONNRESET || rc == -EMFILE)
            drop_message(c);
        return rc;
    }
    drop_message(c);
    *fd = got;
    return 0;
}

int mp_conn_poll(mp_conn *c, int timeout_ms)
{
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    if (!valid(c))
        return -EINVAL;
    if (c->rfd < 0)
        return -EBADF;
    if (c->have_frame)
        return 1;
    struct pollfd p = { .fd = c->rfd, .events = POLLIN };
    int rc = mp__wait_poll(&p, 1, &dl);
    if (rc > 0)
        return 1;
    if (rc == -EAGAIN || rc == -ETIMEDOUT)
        return 0;
    return rc;
}

int mp_conn_fileno(const mp_conn *c)
{
    if (!valid(c))
        return -EINVAL;
    return c->rfd >= 0 ? c->rfd : c->wfd;
}

void mp_conn_close(mp_conn *c)
{
    if (!valid(c))
        return;
    c->magic = 0;
    mp__close(c->rfd);
    mp__close(c->wfd);
    mp__close(c->sfd);
    stash_clear(&c->stash);
    free(c->part);
    free(c->spare);
    shared_unref(c->sh);
    free(c);
}
