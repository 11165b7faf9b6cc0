/* src/pool.c - the worker pool: a shared task ring the workers pull from,
 * one result ring per worker, crash attribution, timeouts and requeueing,
 * all driven from inside the creator's own calls (no threads). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal/core.h"
#include "internal/pool.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/sync.h"

/* Sizes.  The task ring holds inputs on their way to the workers: a record
 * may take at most half of it, so a push always fits once the workers have
 * taken everything.  Each result ring holds at least two of the largest
 * possible one-element records for the same reason. */
#define TRING_SIZE  ((uint64_t)1 << 20)
#define RRING_MIN   ((uint64_t)512 << 10)
#define MAX_PROCS   1024
#define BROKEN_AFTER 3
#define EV_TAG      UINT64_MAX

int mp__pool_test_die_in_take;

/* How long an idle worker polls the task ring before it sleeps, when the
 * machine has more than one CPU: long enough to bridge the gap between two
 * submissions of a busy submitter, short enough not to matter otherwise. */
#define POOL_SPIN_NS 20000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

#define ROUND8(x) (((x) + 7) & ~(uint64_t)7)

typedef struct job job;
typedef struct batch batch;

/* A job is one task record: one apply, or one chunk of a map/imap. */
struct job {
    uint64_t id;
    uint32_t count;    /* elements */
    uint32_t got;      /* elements with a final outcome, in order */
    size_t first;      /* batch index of element 0 */
    mp_result *res;    /* apply: its result */
    batch *b;          /* map/imap: its batch */
};

enum { RES_PENDING, RES_DONE };

struct mp_result {
    mp_pool *pool;     /* dereferenced only while PENDING */
    job j;
    int state;
    bool orphan;       /* the user freed it while pending */
    int code, status;
    size_t len;
    unsigned char *data; /* inl or malloc'd */
    unsigned char inl[48];
};

struct range {
    size_t from, count;
};

struct ielem {         /* one imap element, once ready */
    unsigned char *data;
    uint32_t len;
    int code;
    bool ready;
    unsigned char inl[8];
};

struct batch {
    mp_pool *pool;     /* NULL once the pool is gone */
    batch *prev, *next;
    mp_task fn;
    const unsigned char *in;
    size_t in_size, n, chunk;
    uint32_t out_cap;
    size_t next_in;    /* first element never fed */
    struct range *rq;  /* ranges to feed again (their worker died) */
    size_t nrq, rqcap;
    size_t resolved;   /* elements with a final outcome */
    size_t jobs;       /* jobs in flight */
    bool abandoned;    /* its caller is gone: discard results, feed nothing */
    bool is_iter;
    /* map */
    unsigned char *out;
    size_t out_size, err_idx;
    int err_code;
    /* imap */
    bool ordered;
    struct ielem *el;
    size_t *fifo, fhead, ftail; /* unordered: ready indices */
    size_t next_out;            /* ordered: next index to return */
    size_t consumed;
};

struct mp_iter {
    batch *b;
};

struct worker {
    mp_pool *pool;
    int idx;
    mp_process *proc;  /* NULL: no worker in this slot */
    int fd;            /* its sentinel, registered in epfd */
};

struct htab {          /* job id -> job, open addressing */
    uint64_t *keys;
    job **vals;
    size_t cap, n;
};

enum { P_OPEN, P_CLOSED, P_TERMINATED };
enum { DEATH_NORMAL, DEATH_CANCEL };

struct mp_pool {
    pid_t owner;
    int state;
    int nproc, nalive;
    mp_pool_opts o;
    size_t max_result;
    int64_t tmo_ns;
    int64_t spin_ns;   /* workers' spin before sleeping (0 on one CPU) */
    unsigned char *map;
    size_t map_size;
    struct pool_hdr *h;
    struct pool_slot *slots;
    unsigned char *tring, *rrings;
    uint64_t tcap, rcap;
    uint64_t t_tail;   /* the creator's copy of h->t_tail (it alone writes it) */
    int epfd, evfd;
    struct worker *w;
    uint64_t next_id;
    struct htab ht;
    batch *bhead, *btail;
    unsigned nspawned;
    int nofeed;        /* > 0: an apply waits for room; do not feed batches */
    unsigned nservice; /* service rounds, to look at events every 256 */
    int init_deaths;   /* workers in a row that died inside the initializer */
    bool broken;       /* too many of those: no more workers, tasks fail */
    mp_pool *reg_next; /* the registry of this process's pools */
};

/* ---- the registry of pools, for the fork hook --------------------------------------
 * Every child forked through mproc (a worker of any pool, a user's
 * mp_process) closes the creator-side fds of every pool it inherits: the
 * epoll set always, the eventfd except in a worker of that very pool
 * (which writes it).  reg_lock guards the list and is held across fork. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static mp_pool *reg_head;
static mp_pool *reg_forking; /* the pool spawn_worker forks for, under reg_lock */

static void reg_prepare(void)
{
    pthread_mutex_lock(&reg_lock);
}

static void reg_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

static void reg_child(void)
{
    for (mp_pool *p = reg_head; p; p = p->reg_next) {
        mp__close(p->epfd);
        p->epfd = -1;
        if (p != reg_forking) {
            mp__close(p->evfd);
            p->evfd = -1;
        }
    }
    reg_head = NULL;
    reg_forking = NULL;
    pthread_mutex_init(&reg_lock, NULL);
}

static const mp__fork_hooks pool_hooks = {
    .prepare = reg_prepare,
    .parent = reg_parent,
    .child = reg_child,
};

static void reg_add(mp_pool *p)
{
    mp__fork_register(&pool_hooks);
    pthread_mutex_lock(&reg_lock);
    p->reg_next = reg_head;
    reg_head = p;
    pthread_mutex_unlock(&reg_lock);
}

static void reg_remove(mp_pool *p)
{
    pthread_mutex_lock(&reg_lock);
    for (mp_pool **pp = &reg_head; *pp; pp = &(*pp)->reg_next)
        if (*pp == p) {
            *pp = p->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_lock);
}

/* ---- job table ------------------------------------------------------------------ */

static size_t ht_slot(const struct htab *t, uint64_t k)
{
    return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & (t->cap - 1);
}

static job *ht_find(const struct htab *t, uint64_t k)
{
    if (t->cap == 0)
        return NULL;
    for (size_t i = ht_slot(t, k);; i = (i + 1) & (t->cap - 1)) {
        if (t->keys[i] == k)
            return t->vals[i];
        if (t->keys[i] == 0)
            return NULL;
    }
}

static void ht_put(struct htab *t, uint64_t k, job *v)
{
    size_t i = ht_slot(t, k);
    while (t->keys[i])
        i = (i + 1) & (t->cap - 1);
    t->keys[i] = k;
    t->vals[i] = v;
    t->n++;
}

static int ht_insert(struct htab *t, job *v)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        struct htab nt = { calloc(ncap, sizeof(uint64_t)), calloc(ncap, sizeof(job *)), ncap, 0 };
        if (!nt.keys || !nt.vals) {
            free(nt.keys);
            free(nt.vals);
            return -ENOMEM;
        }
        for (size_t i = 0; i < t->cap; i++)
            if (t->keys[i])
                ht_put(&nt, t->keys[i], t->vals[i]);
        free(t->keys);
        free(t->vals);
        *t = nt;
    }
    ht_put(t, v->id, v);
    return 0;
}

/* Removes k, shifting the following entries back (no tombstones). */
static void ht_remove(struct htab *t, uint64_t k)
{
    if (t->cap == 0)
        return;
    size_t m = t->cap - 1, i = ht_slot(t, k);
    while (t->keys[i] != k) {
        if (t->keys[i] == 0)
            return;
        i = (i + 1) & m;
    }
    for (size_t j = i;;) {
        j = (j + 1) & m;
        if (t->keys[j] == 0)
            break;
        size_t h = ht_slot(t, t->keys[j]);
        /* move j to i unless its home lies cyclically in (i, j] */
        bool stay = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (!stay) {
            t->keys[i] = t->keys[j];
            t->vals[i] = t->vals[j];
            i = j;
        }
    }
    t->keys[i] = 0;
    t->n--;
}

/* ---- the worker side ---------------------------------------------------------------- */

static void notify_parent(struct pool_hdr *h, int evfd)
{
    /* Pairs with the creator's store of psleep before its last look at the
     * rings (Dekker): one of the two sees the other. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&h->psleep, __ATOMIC_RELAXED) &&
        __atomic_exchange_n(&h->psleep, 0, __ATOMIC_SEQ_CST)) {
        uint64_t one = 1;
        ssize_t rc;
        do
            rc = write(evfd, &one, sizeof one);
        while (rc < 0 && errno == EINTR);
    }
}

_Noreturn static void worker_stop(void)
{
    /* The creator marked our element KILLED and is about to SIGKILL us. */
    for (;;)
        pause();
}

/* Under tlock after -EOWNERDEAD: a worker died inside a take.  If it got as
 * far as claiming the record still at the head, undo its claim, so the
 * record counts as not taken (the next taker runs it). */
static void repair_locked(struct pool_hdr *h, struct pool_slot *slots, const unsigned char *tring)
{
    uint64_t head = h->t_head, tail = __atomic_load_n(&h->t_tail, __ATOMIC_ACQUIRE);
    while (head != tail) {
        const struct pool_trec *t = (const void *)(tring + head % h->tcap);
        if (t->type != POOL_REC_PAD) {
            for (uint32_t i = 0; i < h->nproc; i++) {
                uint32_t st = __atomic_load_n(&slots[i].state, __ATOMIC_ACQUIRE);
                if ((st & POOL_ST_MASK) != POOL_ST_IDLE && slots[i].current == t->id)
                    __atomic_store_n(&slots[i].state, (st & ~POOL_ST_MASK) | POOL_ST_IDLE,
                                     __ATOMIC_RELEASE);
            }
            return;
        }
        head += t->size;
    }
}

static int lock_tasks(mp_pool *p)
{
    int rc;
    while ((rc = mp_lock_acquire(&p->h->tlock, MP_FOREVER)) == -EINTR)
        ;
    if (rc == -EOWNERDEAD)
        repair_locked(p->h, p->slots, p->tring);
    else if (rc < 0)
        mp__panic("pool task lock: %d", rc);
    return 0;
}

static void wake_one_taker(struct pool_hdr *h);

/* Takes the next task into buf: true, or false once the pool is closed and
 * the ring is empty (the worker exits). */
static bool worker_take(mp_pool *p, struct pool_slot *s, unsigned char *buf)
{
    struct pool_hdr *h = p->h;
    mp__deadline forever = mp__deadline_from_ms(MP_FOREVER);
    for (;;) {
        uint64_t head = __atomic_load_n(&h->t_head, __ATOMIC_ACQUIRE);
        uint64_t tail = __atomic_load_n(&h->t_tail, __ATOMIC_ACQUIRE);
        if (head == tail && p->spin_ns > 0) {
            /* Spin briefly before sleeping: a stream of small tasks then
             * costs no futex wake per task (see POOL_SPIN_NS). */
            int64_t until = mp__now_ns() + p->spin_ns;
            do {
                for (int k = 0; k < 64; k++)
                    cpu_relax();
                tail = __atomic_load_n(&h->t_tail, __ATOMIC_ACQUIRE);
            } while (tail == head && !__atomic_load_n(&h->closed, __ATOMIC_RELAXED) &&
                     mp__now_ns() < until);
        }
        if (head == tail) {
            if (__atomic_load_n(&h->closed, __ATOMIC_ACQUIRE))
                return false;
            uint32_t seen = __atomic_load_n(&h->t_seq, __ATOMIC_ACQUIRE);
            __atomic_add_fetch(&h->t_waiters, 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(&h->t_tail, __ATOMIC_SEQ_CST) == head &&
                !__atomic_load_n(&h->closed, __ATOMIC_SEQ_CST))
                (void)mp__wait_word(&h->t_seq, seen, &forever);
            __atomic_sub_fetch(&h->t_waiters, 1, __ATOMIC_SEQ_CST);
            continue;
        }
        lock_tasks(p);
        head = h->t_head;
        tail = __atomic_load_n(&h->t_tail, __ATOMIC_ACQUIRE);
        const struct pool_trec *t = NULL;
        while (head != tail) {
            t = (const void *)(p->tring + head % h->tcap);
            if (t->type != POOL_REC_PAD)
                break;
            head += t->size;
            t = NULL;
        }
        if (!t) {
            __atomic_store_n(&h->t_head, head, __ATOMIC_RELEASE);
            mp_lock_release(&h->tlock);
            continue;
        }
        memcpy(buf, t, t->size);
        /* Claim before the head moves: a death in between is undone by
         * repair_locked; a death after it fails this task. */
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_RELAXED);
        s->current = t->id;
        s->elem = 0;
        if (h->timeouts)
            __atomic_store_n(&s->started, mp__now_ns(), __ATOMIC_RELAXED);
        __atomic_store_n(&s->state, (((st >> 2) + 1) << 2) | POOL_ST_RUNNING, __ATOMIC_RELEASE);
        if (MP__UNLIKELY(h->test_die) && h->test_die == 1 &&
            __atomic_exchange_n(&h->test_die, 0, __ATOMIC_SEQ_CST))
            raise(SIGKILL);
        __atomic_store_n(&h->t_head, head + t->size, __ATOMIC_SEQ_CST);
        if (MP__UNLIKELY(h->test_die) && h->test_die == 2 &&
            __atomic_exchange_n(&h->test_die, 0, __ATOMIC_SEQ_CST))
            raise(SIGKILL);
        mp_lock_release(&h->tlock);
        if (head + t->size != __atomic_load_n(&h->t_tail, __ATOMIC_SEQ_CST))
            wake_one_taker(h); /* more is queued: the cascade */
        notify_parent(h, p->evfd);
        return true;
    }
}

/* The worker's writer into its result ring. */
struct rw {
    struct pool_slot *s;
    unsigned char *ring;
    uint64_t cap;
    uint64_t tail;     /* published */
    uint64_t start;    /* the open record's position */
    uint64_t wpos;     /* where the next element goes */
    struct pool_rrec *rec; /* open record, or NULL */
};

static void rw_publish(mp_pool *p, struct rw *w)
{
    w->rec->size = (uint32_t)(w->wpos - w->start);
    w->tail = w->wpos;
    __atomic_store_n(&w->s->r_tail, w->tail, __ATOMIC_RELEASE);
    w->rec = NULL;
    notify_parent(p->h, p->evfd);
}

/* With task timeouts: sets when the current element started (0: it has
 * not, the worker waits for the creator), then moves to a new sequence
 * number; the creator's kill decision is a CAS on the old one, so it can
 * never hit a later element.  If the creator marked us KILLED first, we
 * publish what is done and wait for the SIGKILL. */
static void stamp(mp_pool *p, struct pool_slot *s, int64_t when, struct rw *w)
{
    __atomic_store_n(&s->started, when, __ATOMIC_RELEASE);
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    uint32_t nx = (((st >> 2) + 1) << 2) | POOL_ST_RUNNING;
    if ((st & POOL_ST_MASK) != POOL_ST_RUNNING ||
        !__atomic_compare_exchange_n(&s->state, &st, nx, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        if (w->rec)
            rw_publish(p, w);
        worker_stop();
    }
}

/* Opens a record with room for need bytes, waiting for the creator to
 * consume if the ring is full. */
static void rw_begin(mp_pool *p, struct rw *w, uint64_t need, uint64_t id, uint32_t first)
{
    mp__deadline forever = mp__deadline_from_ms(MP_FOREVER);
    for (;;) {
        uint64_t head = __atomic_load_n(&w->s->r_head, __ATOMIC_ACQUIRE);
        uint64_t off = w->tail % w->cap, to_end = w->cap - off, room = w->cap - (w->tail - head);
        if (to_end < need) {
            if (room >= to_end) {
                struct pool_rrec *pad = (void *)(w->ring + off);
                pad->size = (uint32_t)to_end;
                pad->type = POOL_REC_PAD;
                w->tail += to_end;
                __atomic_store_n(&w->s->r_tail, w->tail, __ATOMIC_RELEASE);
                continue;
            }
        } else if (room >= need) {
            struct pool_rrec *r = (void *)(w->ring + off);
            r->size = 0;
            r->id = id;
            r->first = first;
            r->count = 0;
            __atomic_store_n(&r->type, POOL_REC_RES, __ATOMIC_RELEASE);
            w->rec = r;
            w->start = w->tail;
            w->wpos = w->tail + sizeof *r;
            return;
        }
        if (p->h->timeouts)
            stamp(p, w->s, 0, w); /* waiting for the creator is no task time */
        uint32_t seen = __atomic_load_n(&w->s->r_seq, __ATOMIC_ACQUIRE);
        __atomic_store_n(&w->s->r_wait, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&w->s->r_head, __ATOMIC_SEQ_CST) == head) {
            notify_parent(p->h, p->evfd);
            (void)mp__wait_word(&w->s->r_seq, seen, &forever);
        }
        __atomic_store_n(&w->s->r_wait, 0, __ATOMIC_RELAXED);
    }
}

static uint64_t rw_room(const struct rw *w)
{
    uint64_t end = w->start - w->start % w->cap + w->cap;
    uint64_t lim = __atomic_load_n(&w->s->r_head, __ATOMIC_ACQUIRE) + w->cap;
    if (lim < end)
        end = lim;
    return end - w->wpos;
}

static void worker_run(mp_pool *p, struct pool_slot *s, struct rw *w, const unsigned char *buf)
{
    const struct pool_trec *t = (const void *)buf;
    const unsigned char *in = buf + sizeof *t;
    mp_task fn = (mp_task)(uintptr_t)t->fn;
    uint64_t need_el = sizeof(struct pool_relem) + ROUND8((uint64_t)t->out_cap);
    bool timeouts = p->h->timeouts != 0;
    for (uint32_t e = 0; e < t->count; e++) {
        if (!w->rec || rw_room(w) < need_el) {
            if (w->rec)
                rw_publish(p, w);
            rw_begin(p, w, sizeof(struct pool_rrec) + need_el, t->id, e);
        }
        if (timeouts)
            stamp(p, s, mp__now_ns(), w);
        __atomic_store_n(&s->elem, e, __ATOMIC_RELEASE);
        struct pool_relem *el = (void *)(w->ring + w->wpos % w->cap);
        size_t len = t->out_cap;
        int rc = fn(in + (size_t)e * t->in_size, t->in_size, el + 1, &len);
        el->pad = 0;
        if (rc != 0) {
            el->code = MP_ETASK;
            el->status = rc;
            el->len = 0;
        } else if (len > t->out_cap) {
            el->code = -EMSGSIZE;
            el->status = len > INT_MAX ? INT_MAX : (int)len;
            el->len = 0;
        } else {
            el->code = 0;
            el->status = 0;
            el->len = (uint32_t)len;
        }
        w->wpos += sizeof *el + ROUND8((uint64_t)el->len);
        __atomic_store_n(&w->rec->count, e - w->rec->first + 1, __ATOMIC_RELEASE);
    }
    rw_publish(p, w);
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    if ((st & POOL_ST_MASK) != POOL_ST_RUNNING ||
        !__atomic_compare_exchange_n(&s->state, &st, (st & ~POOL_ST_MASK) | POOL_ST_IDLE, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        worker_stop();
}

static int worker_main(void *arg)
{
    struct worker *wk = arg;
    mp_pool *p = wk->pool;
    struct pool_slot *s = &p->slots[wk->idx];
    unsigned char *buf = malloc(p->tcap / 2);
    if (!buf)
        return 1; /* counts as a death in the initializer */
    if (p->o.initializer)
        p->o.initializer(p->o.initarg);
    __atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
    struct rw w = { .s = s, .ring = p->rrings + (size_t)wk->idx * p->rcap, .cap = p->rcap,
                    .tail = __atomic_load_n(&s->r_tail, __ATOMIC_ACQUIRE) };
    int done = 0;
    while (worker_take(p, s, buf)) {
        worker_run(p, s, &w, buf);
        if (p->o.maxtasksperchild > 0 && ++done >= p->o.maxtasksperchild)
            break;
    }
    free(buf);
    return 0;
}

/* ---- the creator: delivering outcomes ------------------------------------------------------ */

static void batch_unlink(mp_pool *p, batch *b)
{
    if (!p)
        return;
    if (b->prev)
        b->prev->next = b->next;
    else
        p->bhead = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        p->btail = b->prev;
    b->prev = b->next = NULL;
}

static void batch_destroy(batch *b)
{
    if (b->el)
        for (size_t i = 0; i < b->n; i++)
            if (b->el[i].data && b->el[i].data != b->el[i].inl)
                free(b->el[i].data);
    free(b->el);
    free(b->fifo);
    free(b->rq);
    free(b);
}

/* An abandoned batch goes once its last job is done. */
static void batch_maybe_free(mp_pool *p, batch *b)
{
    if (b->abandoned && b->jobs == 0) {
        batch_unlink(p, b);
        batch_destroy(b);
    }
}

static void result_free_data(mp_result *r)
{
    if (r->data && r->data != r->inl)
        free(r->data);
    r->data = NULL;
}

/* Ends a job whose elements all have an outcome (or were requeued). */
static void job_finish(mp_pool *p, job *j)
{
    ht_remove(&p->ht, j->id);
    if (j->res) {
        mp_result *r = j->res;
        r->state = RES_DONE;
        if (r->orphan) {
            result_free_data(r);
            free(r);
        }
        return;
    }
    batch *b = j->b;
    b->jobs--;
    free(j);
    batch_maybe_free(p, b);
}

/* Records the outcome of element idx of a batch. */
static void batch_store(batch *b, size_t idx, int code, const void *data, size_t len)
{
    b->resolved++;
    if (b->abandoned)
        return; /* nobody reads it */
    if (!b->is_iter) {
        if (b->out_size) { /* out may be NULL when out_size is 0 */
            unsigned char *o = b->out + idx * b->out_size;
            if (code == 0 && len)
                memcpy(o, data, len);
            memset(o + (code == 0 ? len : 0), 0, b->out_size - (code == 0 ? len : 0));
        }
        if (code != 0) {
            if (idx < b->err_idx) {
                b->err_idx = idx;
                b->err_code = code;
            }
        }
        return;
    }
    struct ielem *ie = &b->el[idx];
    ie->code = code;
    ie->len = (uint32_t)len;
    if (len > sizeof ie->inl) {
        ie->data = malloc(len);
        if (!ie->data) {
            ie->code = -ENOMEM;
            ie->len = 0;
        }
    } else {
        ie->data = ie->inl;
    }
    if (ie->data && len)
        memcpy(ie->data, data, len);
    ie->ready = true;
    if (!b->ordered)
        b->fifo[b->ftail++] = idx;
}

/* Records the outcome of element j->got; true if that finished the job. */
static bool deliver(mp_pool *p, job *j, int code, int status, const void *data, size_t len)
{
    if (j->res) {
        mp_result *r = j->res;
        r->code = code;
        r->status = status;
        r->len = len;
        if (len > sizeof r->inl) {
            r->data = malloc(len);
            if (!r->data) {
                r->code = -ENOMEM;
                r->len = 0;
            }
        } else {
            r->data = r->inl;
        }
        if (r->data && len)
            memcpy(r->data, data, len);
    } else {
        batch_store(j->b, j->first + j->got, code, data, len);
    }
    if (++j->got == j->count) {
        job_finish(p, j);
        return true;
    }
    return false;
}

/* Gives every element of j without an outcome the error code. */
static void job_fail_rest(mp_pool *p, job *j, int code)
{
    while (!deliver(p, j, code, 0, NULL, 0))
        ;
}

static int batch_requeue(batch *b, size_t from, size_t count)
{
    if (b->nrq == b->rqcap) {
        size_t ncap = b->rqcap ? b->rqcap * 2 : 8;
        struct range *n = realloc(b->rq, ncap * sizeof *n);
        if (!n)
            return -ENOMEM;
        b->rq = n;
        b->rqcap = ncap;
    }
    b->rq[b->nrq++] = (struct range){ from, count };
    return 0;
}

/* The elements of j its dead worker never ran go back to be fed again. */
static void job_requeue_rest(mp_pool *p, job *j)
{
    if (j->got == j->count)
        return;
    batch *b = j->b;
    if (!b || b->abandoned || batch_requeue(b, j->first + j->got, j->count - j->got) < 0) {
        job_fail_rest(p, j, b && !b->abandoned ? -ENOMEM : -ECANCELED);
        return;
    }
    job_finish(p, j);
}

/* Consumes the elements of one result record (count of them, inside
 * avail bytes of the ring). */
static void process_rec(mp_pool *p, const struct pool_rrec *rec, uint32_t count, uint64_t avail,
                        bool check)
{
    job *j = ht_find(&p->ht, rec->id);
    const unsigned char *q = (const unsigned char *)(rec + 1), *end = (const unsigned char *)rec + avail;
    for (uint32_t k = 0; k < count && j; k++) {
        const struct pool_relem *el = (const void *)q;
        if (check && ((const unsigned char *)(el + 1) > end ||
                      (const unsigned char *)(el + 1) + el->len > end))
            return;
        if (rec->first + k == j->got && deliver(p, j, el->code, el->status, el + 1, el->len))
            j = NULL;
        q += sizeof *el + ROUND8((uint64_t)el->len);
    }
}

/* Consumes every published result record of worker i. */
static void collect_ring(mp_pool *p, int i)
{
    struct pool_slot *s = &p->slots[i];
    uint64_t head = s->r_head, tail = __atomic_load_n(&s->r_tail, __ATOMIC_ACQUIRE);
    if (head == tail)
        return;
    unsigned char *ring = p->rrings + (size_t)i * p->rcap;
    while (head < tail) {
        const struct pool_rrec *r = (const void *)(ring + head % p->rcap);
        if (MP__UNLIKELY(r->size == 0 || r->size % 8 || r->size > tail - head ||
                         r->size > p->rcap - head % p->rcap))
            mp__panic("pool: result ring of worker %d corrupted (a task wrote past its "
                      "output buffer?)", i);
        if (r->type != POOL_REC_PAD)
            process_rec(p, r, r->count, r->size, false);
        head += r->size;
    }
    __atomic_store_n(&s->r_head, head, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->r_wait, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&s->r_seq, 1, __ATOMIC_SEQ_CST);
        mp__futex_wake(&s->r_seq, 1);
    }
}

static void collect_all(mp_pool *p)
{
    for (int i = 0; i < p->nproc; i++)
        collect_ring(p, i);
}

/* ---- the creator: feeding ------------------------------------------------------------------- */

/* Where a record of need bytes can be written now (a PAD is written first
 * if the end of the buffer is too short), or NULL if the ring is full. */
static unsigned char *tring_reserve(mp_pool *p, uint64_t need)
{
    uint64_t tail = p->t_tail, head = __atomic_load_n(&p->h->t_head, __ATOMIC_ACQUIRE);
    uint64_t off = tail % p->tcap, to_end = p->tcap - off, room = p->tcap - (tail - head);
    if (to_end < need) {
        if (room < to_end + need)
            return NULL;
        struct pool_trec *pad = (void *)(p->tring + off);
        pad->size = (uint32_t)to_end;
        pad->type = POOL_REC_PAD;
        p->t_tail += to_end; /* published together with the record */
        return p->tring;
    }
    return room < need ? NULL : p->tring + off;
}

static bool tring_fits(mp_pool *p, uint64_t need)
{
    uint64_t tail = p->t_tail, head = __atomic_load_n(&p->h->t_head, __ATOMIC_ACQUIRE);
    uint64_t to_end = p->tcap - tail % p->tcap, room = p->tcap - (tail - head);
    return to_end < need ? room >= to_end + need : room >= need;
}

/* Wakes one sleeping worker.  The creator does it only when a push finds
 * the ring empty (a worker sleeps only after seeing it empty, so the first
 * push after that wakes one); a woken worker that leaves records behind
 * wakes the next one (worker_take), so the wake-ups cascade without a
 * system call per push. */
static void wake_one_taker(struct pool_hdr *h)
{
    if (__atomic_load_n(&h->t_waiters, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&h->t_seq, 1, __ATOMIC_SEQ_CST);
        mp__futex_wake(&h->t_seq, 1);
    }
}

static void tring_publish(mp_pool *p, uint64_t need)
{
    struct pool_hdr *h = p->h;
    uint64_t old = __atomic_load_n(&h->t_tail, __ATOMIC_RELAXED);
    p->t_tail += need;
    __atomic_store_n(&h->t_tail, p->t_tail, __ATOMIC_SEQ_CST);
    /* head == old: the ring was empty (or emptied meanwhile): wake */
    if (__atomic_load_n(&h->t_head, __ATOMIC_SEQ_CST) == old)
        wake_one_taker(h);
}

static void write_trec(unsigned char *at, uint64_t need, uint64_t id, mp_task fn, uint32_t count,
                       size_t in_size, uint32_t out_cap, const void *in)
{
    struct pool_trec *t = (void *)at;
    t->size = (uint32_t)need;
    t->type = POOL_REC_TASK;
    t->id = id;
    t->fn = (uint64_t)(uintptr_t)fn;
    t->count = count;
    t->in_size = (uint32_t)in_size;
    t->out_cap = out_cap;
    t->pad = 0;
    if (count && in_size)
        memcpy(t + 1, in, (size_t)count * in_size);
}

static bool batch_has_work(const batch *b)
{
    return !b->abandoned && (b->nrq > 0 || b->next_in < b->n);
}

static bool pool_has_feed(const mp_pool *p)
{
    for (batch *b = p->bhead; b; b = b->next)
        if (batch_has_work(b))
            return true;
    return false;
}

static void set_closed(mp_pool *p)
{
    if (__atomic_load_n(&p->h->closed, __ATOMIC_RELAXED))
        return;
    __atomic_store_n(&p->h->closed, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&p->h->t_seq, 1, __ATOMIC_SEQ_CST);
    mp__futex_wake(&p->h->t_seq, INT32_MAX);
}

/* Pushes chunks of the batches, oldest first, while the ring has room. */
static void feed(mp_pool *p)
{
    if (p->state == P_TERMINATED || p->broken)
        return;
    if (p->nofeed == 0) {
        for (batch *b = p->bhead; b; b = b->next) {
            while (batch_has_work(b)) {
                size_t from, cnt;
                if (b->nrq) {
                    struct range *r = &b->rq[b->nrq - 1];
                    from = r->from;
                    cnt = r->count < b->chunk ? r->count : b->chunk;
                } else {
                    from = b->next_in;
                    cnt = b->n - from < b->chunk ? b->n - from : b->chunk;
                }
                uint64_t need = sizeof(struct pool_trec) + ROUND8((uint64_t)cnt * b->in_size);
                if (!tring_fits(p, need))
                    return;
                job *j = calloc(1, sizeof *j);
                if (!j)
                    return;
                j->id = ++p->next_id;
                j->count = (uint32_t)cnt;
                j->first = from;
                j->b = b;
                if (ht_insert(&p->ht, j) < 0) {
                    free(j);
                    return;
                }
                unsigned char *at = tring_reserve(p, need);
                write_trec(at, need, j->id, b->fn, (uint32_t)cnt, b->in_size, b->out_cap,
                           b->in + from * b->in_size);
                tring_publish(p, need);
                b->jobs++;
                if (b->nrq) {
                    struct range *r = &b->rq[b->nrq - 1];
                    r->from += cnt;
                    if ((r->count -= cnt) == 0)
                        b->nrq--;
                } else {
                    b->next_in += cnt;
                }
            }
        }
    }
    if (p->state == P_CLOSED && !pool_has_feed(p))
        set_closed(p);
}

/* ---- the creator: workers -------------------------------------------------------------------- */

static int spawn_worker(mp_pool *p, int i)
{
    struct worker *w = &p->w[i];
    struct pool_slot *s = &p->slots[i];
    uint32_t st = s->state;
    s->state = st & ~POOL_ST_MASK; /* IDLE, keeping the sequence */
    s->current = 0;
    s->elem = 0;
    s->r_head = s->r_tail = 0;
    s->r_wait = 0;
    s->ready = 0;
    char name[32];
    snprintf(name, sizeof name, "PoolWorker-%u", ++p->nspawned);
    mp_process *proc;
    int rc = mp_process_new(&proc, worker_main, w, &(mp_process_opts){ .name = name, .daemon = true });
    if (rc < 0)
        return rc;
    /* Single-threaded use of a pool: nobody else forks for it meanwhile;
     * another thread forking through mproc only sees a stale pointer
     * under reg_lock, and keeps one extra eventfd at worst. */
    __atomic_store_n(&reg_forking, p, __ATOMIC_RELAXED);
    rc = mp_process_start(proc);
    __atomic_store_n(&reg_forking, NULL, __ATOMIC_RELAXED);
    if (rc < 0) {
        mp_process_free(proc);
        return rc;
    }
    int fd = mp_process_sentinel(proc);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i };
    if (fd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        rc = fd < 0 ? fd : -errno;
        mp_process_kill(proc);
        mp_process_join(proc, MP_FOREVER);
        mp_process_free(proc);
        return rc;
    }
    w->proc = proc;
    w->fd = fd;
    p->nalive++;
    return 0;
}

static bool work_remains(mp_pool *p)
{
    return p->ht.n > 0 || pool_has_feed(p) ||
           __atomic_load_n(&p->h->t_head, __ATOMIC_ACQUIRE) != p->t_tail;
}

static void spawn_missing(mp_pool *p)
{
    if (p->state == P_TERMINATED || p->broken || p->nalive == p->nproc)
        return;
    if (p->state == P_CLOSED && !work_remains(p))
        return;
    for (int i = 0; i < p->nproc; i++)
        if (!p->w[i].proc && spawn_worker(p, i) < 0)
            return; /* try again at the next service */
}

/* Salvages the elements worker i finished in the record it had not
 * published when it died. */
static void salvage(mp_pool *p, int i, job *j)
{
    struct pool_slot *s = &p->slots[i];
    uint64_t pos = s->r_head, off = pos % p->rcap;
    if (p->rcap - off < sizeof(struct pool_rrec) + sizeof(struct pool_relem))
        return;
    const struct pool_rrec *r = (const void *)(p->rrings + (size_t)i * p->rcap + off);
    if (r->type != POOL_REC_RES || r->id != j->id || r->first != j->got ||
        r->count > j->count - j->got)
        return;
    process_rec(p, r, r->count, p->rcap - off, true);
}

/* Worker i has exited: reap it, settle the task it ran, replace it. */
static void handle_death(mp_pool *p, int i, int mode)
{
    struct worker *w = &p->w[i];
    struct pool_slot *s = &p->slots[i];
    if (!w->proc)
        return;
    int code = 0;
    while (mp_process_join(w->proc, MP_FOREVER) == -EINTR)
        ;
    (void)mp_process_exitcode(w->proc, &code);
    int sig = code < 0 ? -code : 0;
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    mp_process_free(w->proc);
    w->proc = NULL;
    w->fd = -1;
    p->nalive--;
    /* Workers that keep dying before their initializer returns would be
     * replaced forever (Python's Pool does that): after BROKEN_AFTER in a
     * row the pool stops replacing them and fails its tasks instead. */
    if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE)) {
        if (++p->init_deaths >= BROKEN_AFTER && mode == DEATH_NORMAL)
            p->broken = true;
    } else {
        p->init_deaths = 0;
    }

    /* Holding tlock, no take is half done: the slot says exactly what the
     * dead worker had taken. */
    lock_tasks(p);
    collect_ring(p, i);
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    job *j = (st & POOL_ST_MASK) != POOL_ST_IDLE ? ht_find(&p->ht, s->current) : NULL;
    if (j) {
        salvage(p, i, j);
        j = ht_find(&p->ht, s->current);
    }
    if (j) {
        if (mode == DEATH_CANCEL) {
            job_fail_rest(p, j, -ECANCELED);
        } else {
            bool done = false;
            if (s->elem >= j->got) {
                bool killed = (st & POOL_ST_MASK) == POOL_ST_KILLED;
                done = deliver(p, j, killed ? -ETIME : MP_EWORKER, killed ? 0 : sig, NULL, 0);
            }
            if (!done)
                job_requeue_rest(p, j);
        }
    }
    s->state = (st & ~POOL_ST_MASK) | POOL_ST_IDLE;
    mp_lock_release(&p->h->tlock);
    if (mode == DEATH_NORMAL) {
        feed(p);
        spawn_missing(p);
    }
}

/* Kills the workers whose element ran past the timeout; returns the
 * earliest time another one may expire. */
static int64_t check_timeouts(mp_pool *p)
{
    int64_t now = mp__now_ns(), next = now + p->tmo_ns;
    for (int i = 0; i < p->nproc; i++) {
        struct pool_slot *s = &p->slots[i];
        if (!p->w[i].proc)
            continue;
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if ((st & POOL_ST_MASK) != POOL_ST_RUNNING)
            continue;
        int64_t started = __atomic_load_n(&s->started, __ATOMIC_ACQUIRE);
        if (started == 0)
            continue; /* waiting for us to consume its results */
        int64_t due = started + p->tmo_ns;
        if (due > now) {
            if (due < next)
                next = due;
            continue;
        }
        if (__atomic_compare_exchange_n(&s->state, &st, (st & ~POOL_ST_MASK) | POOL_ST_KILLED,
                                        false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            (void)mp_process_kill(p->w[i].proc);
    }
    return next;
}

static void drain_eventfd(mp_pool *p)
{
    uint64_t v;
    while (read(p->evfd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

static void fail_all(mp_pool *p, int code);

/* Handles what epoll reports now: the eventfd (drained) and dead workers. */
static void service_events(mp_pool *p)
{
    struct epoll_event ev[64];
    int n;
    while ((n = epoll_wait(p->epfd, ev, 64, 0)) < 0 && errno == EINTR)
        ;
    for (int k = 0; k < n; k++)
        if (ev[k].data.u64 == EV_TAG)
            drain_eventfd(p);
    for (int k = 0; k < n; k++)
        if (ev[k].data.u64 != EV_TAG)
            handle_death(p, (int)ev[k].data.u64, DEATH_NORMAL);
    spawn_missing(p);
    if (p->broken && p->nalive == 0)
        fail_all(p, MP_EWORKER);
}

/* One round of the creator's work: results, timeouts, feeding; with
 * events, first what epoll reports. */
static int64_t service(mp_pool *p, bool events)
{
    int64_t next = INT64_MAX;
    /* A caller whose results are always ready never sleeps: look at the
     * events now and then anyway, so dead workers are reaped and replaced
     * without waiting for a sleep. */
    if (events || (++p->nservice & 255) == 0)
        service_events(p);
    collect_all(p);
    if (p->tmo_ns)
        next = check_timeouts(p);
    feed(p);
    return next;
}

typedef bool (*cond_fn)(mp_pool *p, void *ctx);

/* Waits until cond holds, doing the pool's work meanwhile.  Sleeps on the
 * epoll set (the eventfd the workers write when the creator sleeps, and
 * every worker's pidfd), so a death wakes it as a result does; with task
 * timeouts it also wakes when the next one may expire. */
static int pool_wait(mp_pool *p, cond_fn cond, void *ctx, const mp__deadline *dl)
{
    for (;;) {
        service(p, false);
        if (cond(p, ctx))
            return 0;
        /* Drain the eventfd, then announce the sleep, then look at the
         * rings a last time: a worker that publishes after that look sees
         * psleep set and writes the eventfd, which stays pending (it was
         * drained before) and ends the poll below. */
        service_events(p);
        __atomic_store_n(&p->h->psleep, 1, __ATOMIC_SEQ_CST);
        int64_t next = service(p, false);
        if (cond(p, ctx)) {
            __atomic_store_n(&p->h->psleep, 0, __ATOMIC_RELAXED);
            return 0;
        }
        if (dl->nowait) {
            __atomic_store_n(&p->h->psleep, 0, __ATOMIC_RELAXED);
            return -EAGAIN;
        }
        mp__deadline sdl = *dl;
        bool capped = false;
        if (next < sdl.at_ns) {
            sdl.at_ns = next;
            capped = true;
        }
        struct pollfd pf = { .fd = p->epfd, .events = POLLIN };
        int rc = mp__wait_poll(&pf, 1, &sdl);
        __atomic_store_n(&p->h->psleep, 0, __ATOMIC_RELAXED);
        if (rc == -ETIMEDOUT || rc == -EAGAIN) {
            if (capped && !mp__deadline_expired(dl))
                continue;
            service(p, true);
            return cond(p, ctx) ? 0 : mp__deadline_code(dl);
        }
        if (rc < 0)
            return rc;
    }
}

/* ---- public API ---------------------------------------------------------------------------------- */

/* getpid() is a system call: cache it, and forget it in every child
 * (pthread_atfork covers raw fork() too, not only mp__fork). */
static pid_t pid_cache;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_forget(void)
{
    __atomic_store_n(&pid_cache, 0, __ATOMIC_RELAXED);
}

static void pid_init(void)
{
    (void)pthread_atfork(NULL, NULL, pid_forget);
}

static pid_t my_pid(void)
{
    pid_t me = __atomic_load_n(&pid_cache, __ATOMIC_RELAXED);
    if (MP__UNLIKELY(me == 0)) {
        pthread_once(&pid_once, pid_init);
        me = getpid();
        __atomic_store_n(&pid_cache, me, __ATOMIC_RELAXED);
    }
    return me;
}

static int check_pool(const mp_pool *p)
{
    if (!p)
        return -EINVAL;
    if (p->owner != my_pid())
        return -ECHILD;
    return 0;
}

static void pool_release(mp_pool *p)
{
    reg_remove(p);
    if (p->epfd >= 0)
        mp__close(p->epfd);
    if (p->evfd >= 0)
        mp__close(p->evfd);
    if (p->map)
        munmap(p->map, p->map_size);
    free(p->ht.keys);
    free(p->ht.vals);
    free(p->w);
    free(p);
}

int mp_pool_new(mp_pool **out, const mp_pool_opts *opts)
{
    mp_pool_opts o = opts ? *opts : (mp_pool_opts){ 0 };
    if (!out || o.processes < 0 || o.processes > MAX_PROCS || o.maxtasksperchild < 0 ||
        o.task_timeout_ms < 0 || o.max_result > MP_POOL_MAX_RESULT)
        return -EINVAL;
    if (o.processes == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.processes = n < 1 ? 1 : n > MAX_PROCS ? MAX_PROCS : (int)n;
    }
    mp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->owner = my_pid();
    p->o = o;
    p->nproc = o.processes;
    p->max_result = o.max_result ? o.max_result : MP_POOL_DEFAULT_RESULT;
    p->tmo_ns = (int64_t)o.task_timeout_ms * 1000000;
    p->spin_ns = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? POOL_SPIN_NS : 0;
    p->epfd = p->evfd = -1;
    p->tcap = TRING_SIZE;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t rmin = 2 * (sizeof(struct pool_rrec) + sizeof(struct pool_relem) + ROUND8(p->max_result));
    p->rcap = rmin > RRING_MIN ? rmin : RRING_MIN;
    p->rcap = (p->rcap + (uint64_t)pg - 1) / (uint64_t)pg * (uint64_t)pg;
    size_t off_slots = sizeof(struct pool_hdr);
    off_slots = (off_slots + 63) & ~(size_t)63;
    size_t off_t = off_slots + (size_t)p->nproc * sizeof(struct pool_slot);
    off_t = (off_t + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
    size_t off_r = off_t + p->tcap;
    p->map_size = off_r + (size_t)p->nproc * p->rcap;
    int rc = -ENOMEM;
    p->w = calloc((size_t)p->nproc, sizeof *p->w);
    if (!p->w)
        goto fail;
    void *m = mmap(NULL, p->map_size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    p->map = m;
    p->h = m;
    p->slots = (void *)(p->map + off_slots);
    p->tring = p->map + off_t;
    p->rrings = p->map + off_r;
    p->h->tcap = p->tcap;
    p->h->rcap = p->rcap;
    p->h->nproc = (uint32_t)p->nproc;
    p->h->timeouts = o.task_timeout_ms > 0;
    p->h->test_die = (uint32_t)mp__pool_test_die_in_take;
    if ((rc = mp_lock_init(&p->h->tlock)) < 0)
        goto fail;
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->evfd < 0 || p->epfd < 0) {
        rc = -errno;
        goto fail;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV_TAG };
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev) < 0) {
        rc = -errno;
        goto fail;
    }
    for (int i = 0; i < p->nproc; i++) {
        p->w[i].pool = p;
        p->w[i].idx = i;
        p->w[i].fd = -1;
    }
    reg_add(p);
    for (int i = 0; i < p->nproc; i++) {
        if ((rc = spawn_worker(p, i)) < 0) {
            mp_pool_terminate(p);
            goto fail;
        }
    }
    *out = p;
    return 0;
fail:
    pool_release(p);
    return rc;
}

static bool res_done(mp_pool *p, void *ctx)
{
    (void)p;
    return ((mp_result *)ctx)->state == RES_DONE;
}

static bool room_for(mp_pool *p, void *ctx)
{
    return p->broken || tring_fits(p, *(uint64_t *)ctx);
}

int mp_pool_apply_async(mp_pool *p, mp_task fn, const void *in, size_t in_len, mp_result **out)
{
    int rc = check_pool(p);
    if (rc < 0)
        return rc;
    if (!fn || !out || (!in && in_len))
        return -EINVAL;
    if (p->state != P_OPEN)
        return -EPIPE;
    if (in_len > MP_POOL_MAX_INPUT)
        return -EMSGSIZE;
    if (p->broken)
        return MP_EWORKER;
    mp_result *r = malloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    r->pool = p;
    r->j = (job){ .id = ++p->next_id, .count = 1, .res = r };
    r->state = RES_PENDING;
    r->orphan = false;
    r->code = r->status = 0;
    r->len = 0;
    r->data = NULL;
    uint64_t need = sizeof(struct pool_trec) + ROUND8((uint64_t)in_len);
    if (!tring_fits(p, need)) {
        mp__deadline forever = mp__deadline_from_ms(MP_FOREVER);
        p->nofeed++;
        rc = pool_wait(p, room_for, &need, &forever);
        p->nofeed--;
        if (rc == 0 && p->state != P_OPEN)
            rc = -EPIPE;
        if (rc == 0 && p->broken)
            rc = MP_EWORKER;
        if (rc < 0) {
            free(r);
            return rc;
        }
    }
    if ((rc = ht_insert(&p->ht, &r->j)) < 0) {
        free(r);
        return rc;
    }
    unsigned char *at = tring_reserve(p, need);
    write_trec(at, need, r->j.id, fn, 1, in_len, (uint32_t)p->max_result, in);
    tring_publish(p, need);
    *out = r;
    return 0;
}

int mp_result_wait(mp_result *r, int timeout_ms)
{
    if (!r)
        return -EINVAL;
    if (r->state == RES_DONE)
        return 0;
    int rc = check_pool(r->pool);
    if (rc < 0)
        return rc;
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    return pool_wait(r->pool, res_done, r, &dl);
}

bool mp_result_ready(mp_result *r)
{
    if (!r)
        return false;
    if (r->state == RES_DONE)
        return true;
    if (check_pool(r->pool) < 0)
        return false;
    service(r->pool, true);
    return r->state == RES_DONE;
}

int mp_result_get(mp_result *r, void *out, size_t *out_len, int timeout_ms)
{
    if (!r || (!out && out_len && *out_len))
        return -EINVAL;
    int rc = mp_result_wait(r, timeout_ms);
    if (rc < 0)
        return rc;
    if (r->code != 0) {
        if (out_len && r->code == -EMSGSIZE)
            *out_len = 0;
        return r->code;
    }
    if (out_len) {
        if (r->len > *out_len) {
            *out_len = r->len;
            return -EMSGSIZE;
        }
        if (r->len)
            memcpy(out, r->data, r->len);
        *out_len = r->len;
    }
    return 0;
}

int mp_result_status(const mp_result *r)
{
    return r && r->state == RES_DONE ? r->status : 0;
}

void mp_result_free(mp_result *r)
{
    if (!r)
        return;
    if (r->state == RES_PENDING) {
        r->orphan = true; /* the pool frees it when its outcome arrives */
        return;
    }
    result_free_data(r);
    free(r);
}

int mp_pool_apply(mp_pool *p, mp_task fn, const void *in, size_t in_len, void *out,
                  size_t *out_len)
{
    if (!out_len || (!out && *out_len))
        return -EINVAL;
    mp_result *r;
    int rc = mp_pool_apply_async(p, fn, in, in_len, &r);
    if (rc < 0)
        return rc;
    rc = mp_result_get(r, out, out_len, MP_FOREVER);
    mp_result_free(r);
    return rc;
}

/* The automatic chunk size: Python's ceil(n / (4 * processes)), capped so
 * one chunk's input takes at most a quarter of the task ring. */
static size_t auto_chunk(const mp_pool *p, size_t n, size_t in_size, size_t chunksize)
{
    size_t cap = in_size ? (p->tcap / 4 - sizeof(struct pool_trec)) / in_size : SIZE_MAX;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    size_t k = chunksize;
    if (k == 0) {
        size_t d = 4 * (size_t)p->nproc;
        k = n / d + (n % d != 0);
    }
    if (k > cap)
        k = cap;
    return k ? k : 1;
}

static int batch_new(mp_pool *p, mp_task fn, const void *in, size_t in_size, size_t n,
                     size_t chunksize, size_t out_cap, batch **out)
{
    int rc = check_pool(p);
    if (rc < 0)
        return rc;
    if (!fn || (!in && in_size && n))
        return -EINVAL;
    if (p->state != P_OPEN)
        return -EPIPE;
    if (in_size > MP_POOL_MAX_INPUT)
        return -EMSGSIZE;
    if (p->broken)
        return MP_EWORKER;
    if (n > SIZE_MAX / (in_size ? in_size : 1))
        return -EINVAL;
    batch *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->pool = p;
    b->fn = fn;
    b->in = in;
    b->in_size = in_size;
    b->n = n;
    b->chunk = auto_chunk(p, n, in_size, chunksize);
    b->out_cap = (uint32_t)(out_cap < p->max_result ? out_cap : p->max_result);
    b->err_idx = SIZE_MAX;
    *out = b;
    return 0;
}

static void batch_link(mp_pool *p, batch *b)
{
    b->prev = p->btail;
    if (p->btail)
        p->btail->next = b;
    else
        p->bhead = b;
    p->btail = b;
}

static bool batch_done(mp_pool *p, void *ctx)
{
    (void)p;
    batch *b = ctx;
    return b->resolved == b->n;
}

int mp_pool_map(mp_pool *p, mp_task fn, const void *in, size_t in_size, size_t n, void *out,
                size_t out_size, size_t chunksize)
{
    if (!out && out_size && n)
        return -EINVAL;
    if (out_size && n > SIZE_MAX / out_size)
        return -EINVAL;
    batch *b;
    int rc = batch_new(p, fn, in, in_size, n, chunksize, out_size, &b);
    if (rc < 0)
        return rc;
    b->out = out;
    b->out_size = out_size;
    batch_link(p, b);
    mp__deadline forever = mp__deadline_from_ms(MP_FOREVER);
    rc = pool_wait(p, batch_done, b, &forever);
    if (rc < 0) {
        b->abandoned = true;
        batch_maybe_free(p, b);
        return rc;
    }
    rc = b->err_code;
    batch_unlink(p, b);
    batch_destroy(b);
    return rc;
}

int mp_pool_imap(mp_pool *p, mp_task fn, const void *in, size_t in_size, size_t n,
                 size_t chunksize, bool ordered, mp_iter **out)
{
    if (!out)
        return -EINVAL;
    batch *b;
    int rc = batch_new(p, fn, in, in_size, n, chunksize, p ? p->max_result : 0, &b);
    if (rc < 0)
        return rc;
    mp_iter *it = malloc(sizeof *it);
    b->is_iter = true;
    b->ordered = ordered;
    b->el = calloc(n ? n : 1, sizeof *b->el);
    b->fifo = ordered ? NULL : malloc((n ? n : 1) * sizeof *b->fifo);
    if (!it || !b->el || (!ordered && !b->fifo)) {
        free(it);
        batch_destroy(b);
        return -ENOMEM;
    }
    it->b = b;
    batch_link(p, b);
    service(p, false);
    *out = it;
    return 0;
}

static bool iter_ready(mp_pool *p, void *ctx)
{
    (void)p;
    batch *b = ctx;
    return b->ordered ? b->el[b->next_out].ready : b->fhead < b->ftail;
}

int mp_iter_next(mp_iter *it, size_t *index, void *out, size_t *out_len, int timeout_ms)
{
    if (!it || (!out && out_len && *out_len))
        return -EINVAL;
    batch *b = it->b;
    if (b->consumed == b->n)
        return MP_EOF;
    if (!iter_ready(b->pool, b)) {
        int rc = check_pool(b->pool);
        if (rc < 0)
            return rc;
        mp__deadline dl = mp__deadline_from_ms(timeout_ms);
        if ((rc = pool_wait(b->pool, iter_ready, b, &dl)) < 0)
            return rc;
    }
    size_t idx = b->ordered ? b->next_out : b->fifo[b->fhead];
    struct ielem *ie = &b->el[idx];
    if (index)
        *index = idx;
    int rc = ie->code;
    if (rc == 0 && out_len) {
        if (ie->len > *out_len) {
            *out_len = ie->len;
            return -EMSGSIZE;
        }
        if (ie->len)
            memcpy(out, ie->data, ie->len);
        *out_len = ie->len;
    } else if (rc == -EMSGSIZE && out_len) {
        *out_len = 0;
    }
    if (ie->data && ie->data != ie->inl)
        free(ie->data);
    ie->data = NULL;
    if (b->ordered)
        b->next_out++;
    else
        b->fhead++;
    b->consumed++;
    return rc;
}

void mp_iter_free(mp_iter *it)
{
    if (!it)
        return;
    batch *b = it->b;
    free(it);
    b->abandoned = true;
    b->nrq = 0;
    if (!b->pool || b->pool->owner != my_pid()) {
        batch_destroy(b);
        return;
    }
    batch_maybe_free(b->pool, b);
}

int mp_pool_close(mp_pool *p)
{
    int rc = check_pool(p);
    if (rc < 0)
        return rc;
    if (p->state == P_OPEN) {
        p->state = P_CLOSED;
        feed(p);
    }
    return 0;
}

static bool all_done(mp_pool *p, void *ctx)
{
    (void)ctx;
    return p->ht.n == 0 && !pool_has_feed(p);
}

static bool none_alive(mp_pool *p, void *ctx)
{
    (void)ctx;
    return p->nalive == 0;
}

int mp_pool_join(mp_pool *p)
{
    int rc = check_pool(p);
    if (rc < 0)
        return rc;
    if (p->state == P_OPEN)
        return -EINVAL;
    mp__deadline forever = mp__deadline_from_ms(MP_FOREVER);
    if ((rc = pool_wait(p, all_done, NULL, &forever)) < 0)
        return rc;
    set_closed(p);
    return pool_wait(p, none_alive, NULL, &forever);
}

/* Fails every element that has no outcome yet with code (allocates
 * nothing: a result must never be left pending once its pool is gone). */
static void fail_all(mp_pool *p, int code)
{
    while (p->ht.n) {
        for (size_t i = 0; i < p->ht.cap; i++)
            while (p->ht.keys[i]) /* failing it removes it; a later entry may shift here */
                job_fail_rest(p, p->ht.vals[i], code);
    }
    for (batch *b = p->bhead, *next; b; b = next) {
        next = b->next;
        if (b->abandoned)
            continue;
        while (batch_has_work(b)) {
            size_t idx;
            if (b->nrq) {
                idx = b->rq[b->nrq - 1].from++;
                if (--b->rq[b->nrq - 1].count == 0)
                    b->nrq--;
            } else {
                idx = b->next_in++;
            }
            batch_store(b, idx, code, NULL, 0);
        }
    }
}

int mp_pool_terminate(mp_pool *p)
{
    int rc = check_pool(p);
    if (rc < 0)
        return rc;
    p->state = P_TERMINATED;
    set_closed(p);
    for (int i = 0; i < p->nproc; i++)
        if (p->w[i].proc)
            (void)mp_process_kill(p->w[i].proc);
    for (int i = 0; i < p->nproc; i++)
        handle_death(p, i, DEATH_CANCEL);
    fail_all(p, -ECANCELED);
    return 0;
}

void mp_pool_free(mp_pool *p)
{
    if (!p)
        return;
    if (p->owner == my_pid()) {
        mp_pool_terminate(p);
        for (batch *b = p->bhead, *next; b; b = next) {
            next = b->next;
            b->prev = b->next = NULL;
            if (b->abandoned)
                batch_destroy(b);
            else
                b->pool = NULL; /* an iterator the user still holds */
        }
        p->bhead = p->btail = NULL;
    } else {
        /* Another process's copy: release our memory, touch no worker. */
        free(p->w);
        p->w = NULL;
    }
    pool_release(p);
}
