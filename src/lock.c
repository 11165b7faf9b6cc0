/* src/lock.c - the robust process-shared locks (mp_lock, mp_rlock) on the
 * kernel's robust-futex list.
 *
 * How a dead owner is detected.  The kernel keeps, per thread, a pointer to a
 * user-space list of the robust futexes the thread holds (set_robust_list).
 * When the thread dies for any reason (SIGKILL included) the kernel walks the
 * list; for every entry whose futex word still holds the thread's id it sets
 * FUTEX_OWNER_DIED (bit 30), keeps FUTEX_WAITERS (bit 31), clears the id and
 * wakes one waiter.  It also looks at list_op_pending, the entry the thread
 * was in the middle of adding or removing, so a death between the CAS that
 * takes a lock and the list insertion is recovered too; and if that pending
 * word is 0 (a release had already stored 0 but not yet woken anyone) it
 * wakes one waiter.
 *
 * A thread has exactly one list, and glibc registers it at thread start for
 * its own robust pthread mutexes.  We must not replace it, so mp_lock joins
 * it: we read the head with get_robust_list(0, ...) and insert our node with
 * glibc's entry layout, a doubly linked {prev, next} pair whose next field is
 * what the list points at and whose futex word lies futex_offset (-32 on
 * 64-bit glibc) bytes before it.  glibc's pthread_mutex_unlock unlinks its
 * own mutexes by writing the neighbours' prev/next fields, which works on
 * our nodes because they have the same shape; and both sides touch the list
 * only from the owning thread.  If a thread has no list yet (another libc, or
 * glibc built without it), we register our own per-thread head with the
 * same layout.  If the registered head has another futex_offset, robust
 * locks cannot work and the lock functions return -ENOTSUP.
 *
 * Ordering inside a thread: list_op_pending is set before the CAS that takes
 * the lock and cleared only once the node is linked (acquire), and set
 * before unlinking and cleared after the word is released (release), so the
 * kernel finds the lock at every instant a SIGKILL can land.  The kernel
 * reads the list only after the thread stopped, so compiler barriers (not
 * CPU fences) order those plain stores.
 *
 * Lost wake-ups.  Two windows remain that the kernel protocol alone cannot
 * close: a releaser killed after storing 0 and before waking while another
 * process took the lock meanwhile, and a woken waiter killed before it takes
 * the lock or re-marks WAITERS.  In both a sleeper can miss its wake-up;
 * sleepers therefore re-check the word every MP_SYNC_RESCUE_MS
 * (mp__wait_rescue) and re-set WAITERS on a held lock, which bounds the
 * delay.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal/core.h"
#include "internal/lock.h"

#define MP__TLS __thread __attribute__((tls_model("initial-exec")))

/* The node is {prev, next} = robust[0..1]; the list points at robust[1]. */
#define NODE_NEXT_OFF offsetof(mp_lock, robust[1])
#define FUTEX_OFFSET (-(long)NODE_NEXT_OFF)

_Static_assert(offsetof(mp_lock, state) == 0, "lock word first");
_Static_assert(offsetof(mp_rlock, state) == offsetof(mp_lock, state), "rlock layout");
_Static_assert(offsetof(mp_rlock, robust) == offsetof(mp_lock, robust), "rlock layout");
_Static_assert(offsetof(mp_lock, robust[1]) - offsetof(mp_lock, robust[0]) == sizeof(uintptr_t),
               "prev right before next, as glibc's __pthread_list_t");

/* A head we register ourselves when the thread has none.  glibc keeps a
 * pointer-sized slot right before its head (robust_prev), which the unlink
 * code writes as the "prev" of the head when the list's last entry goes; we
 * reproduce that. */
struct own_head {
    uintptr_t prev_slot;
    struct robust_list_head head;
};

static MP__TLS pid_t t_tid;                       /* 0: not yet known */
static MP__TLS struct robust_list_head *t_head;   /* this thread's list */
static MP__TLS int t_err;                         /* -ENOTSUP if unusable */
static MP__TLS struct own_head t_own;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A fork child is a new thread with a new id; glibc re-registers the same
 * head address in it (empty), but we look it up again anyway. */
static void reset_thread_cache(void)
{
    t_tid = 0;
    t_head = NULL;
    t_err = 0;
}

static const mp__fork_hooks lock_fork_hooks = { NULL, NULL, reset_thread_cache };

static void register_atfork(void)
{
    /* pthread_atfork covers a plain fork() by the application as well;
     * mp__fork calls fork(), so it runs there too and the mp__fork hook is
     * only a second reset of the same cache. */
    pthread_atfork(NULL, NULL, reset_thread_cache);
    mp__fork_register(&lock_fork_hooks);
}

static __attribute__((noinline)) int thread_setup(void)
{
    pthread_once(&atfork_once, register_atfork);
    pid_t tid = (pid_t)syscall(SYS_gettid);
    struct robust_list_head *h = NULL;
    size_t len = 0;
    int err = 0;
    if (syscall(SYS_get_robust_list, 0, &h, &len) != 0 || h == NULL) {
        t_own.head.list.next = &t_own.head.list;
        t_own.head.futex_offset = FUTEX_OFFSET;
        t_own.head.list_op_pending = NULL;
        if (syscall(SYS_set_robust_list, &t_own.head, sizeof t_own.head) != 0)
            err = -ENOTSUP;
        else
            h = &t_own.head;
    } else if (len != sizeof *h || h->futex_offset != FUTEX_OFFSET) {
        err = -ENOTSUP;
    }
    t_head = h;
    t_err = err;
    t_tid = tid;
    return err;
}

/* 0 with the cache filled, or -ENOTSUP. */
static inline int thread_ready(void)
{
    if (MP__LIKELY(t_tid != 0))
        return t_err;
    return thread_setup();
}

pid_t mp__tid(void)
{
    thread_ready();
    return t_tid;
}

#define BARRIER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

static inline void set_pending(uintptr_t *node_next)
{
    t_head->list_op_pending = (struct robust_list *)node_next;
    BARRIER();
}

static inline void clear_pending(void)
{
    BARRIER();
    t_head->list_op_pending = NULL;
}

/* Links the node whose next field is node[1] at the head of this thread's
 * list (glibc's ENQUEUE_MUTEX_BOTH). */
static inline void list_add(uintptr_t *node)
{
    struct robust_list_head *h = t_head;
    uintptr_t first = (uintptr_t)h->list.next;
    uintptr_t *first_prev = (uintptr_t *)((first & ~(uintptr_t)1) - sizeof(uintptr_t));
    *first_prev = (uintptr_t)&node[1];
    node[1] = first;
    node[0] = (uintptr_t)&h->list;
    BARRIER();
    h->list.next = (struct robust_list *)&node[1];
}

/* Unlinks the node (glibc's DEQUEUE_MUTEX). */
static inline void list_del(uintptr_t *node)
{
    uintptr_t next = node[1], prev = node[0];
    uintptr_t *next_node = (uintptr_t *)((next & ~(uintptr_t)1) - sizeof(uintptr_t));
    uintptr_t *prev_node = (uintptr_t *)((prev & ~(uintptr_t)1) - sizeof(uintptr_t));
    next_node[0] = prev;
    prev_node[1] = next;
    BARRIER();
    node[0] = node[1] = 0;
}

int mp__wait_rescue(uint32_t *addr, uint32_t expected, const mp__deadline *dl)
{
    if (dl->nowait)
        return mp__wait_word(addr, expected, dl);
    mp__deadline slice = *dl;
    int64_t cap = mp__now_ns() + (int64_t)MP_SYNC_RESCUE_MS * 1000000;
    if (slice.at_ns > cap)
        slice.at_ns = cap;
    int rc = mp__wait_word(addr, expected, &slice);
    if (rc == -ETIMEDOUT && !mp__deadline_expired(dl))
        return 0; /* only the slice ended: re-check */
    return rc;
}

/* The contended path of acquire; the caller set list_op_pending.  Returns
 * with the node linked and pending cleared on 0/-EOWNERDEAD, pending cleared
 * on every error. */
static __attribute__((noinline)) int lock_slow(uint32_t *word, uintptr_t *node,
                                               const mp__deadline *dl)
{
    uint32_t tid = (uint32_t)t_tid;
    uint32_t slept = 0; /* WAITERS once we have slept: others may still sleep */
    for (;;) {
        uint32_t v = __atomic_load_n(word, __ATOMIC_RELAXED);
        uint32_t owner = v & MP__LOCK_TID;
        if (owner == 0) {
            /* Free, or its owner died (the kernel left DIED|maybe WAITERS).
             * Taking it clears DIED: whoever wins this CAS is the one
             * acquirer told -EOWNERDEAD. */
            uint32_t nv = tid | (v & MP__LOCK_WAITERS) | slept;
            if (!__atomic_compare_exchange_n(word, &v, nv, false, __ATOMIC_ACQUIRE,
                                             __ATOMIC_RELAXED))
                continue;
            list_add(node);
            clear_pending();
            return (v & MP__LOCK_DIED) ? -EOWNERDEAD : 0;
        }
        if (owner == tid) {
            clear_pending();
            return -EDEADLK;
        }
        if (dl->nowait) {
            clear_pending();
            return -EAGAIN;
        }
        if (!(v & MP__LOCK_WAITERS)) {
            uint32_t nv = v | MP__LOCK_WAITERS;
            if (!__atomic_compare_exchange_n(word, &v, nv, false, __ATOMIC_RELAXED,
                                             __ATOMIC_RELAXED))
                continue;
            v = nv;
        }
        int rc = mp__wait_rescue(word, v, dl);
        if (rc < 0) {
            clear_pending();
            return rc;
        }
        slept = MP__LOCK_WAITERS;
    }
}

static inline int robust_acquire(uint32_t *word, uintptr_t *node, const mp__deadline *dl)
{
    set_pending(&node[1]);
    uint32_t expected = 0;
    if (MP__LIKELY(__atomic_compare_exchange_n(word, &expected, (uint32_t)t_tid, false,
                                               __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))) {
        list_add(node);
        clear_pending();
        return 0;
    }
    return lock_slow(word, node, dl);
}

static inline int robust_acquire_ms(uint32_t *word, uintptr_t *node, int timeout_ms)
{
    set_pending(&node[1]);
    uint32_t expected = 0;
    if (MP__LIKELY(__atomic_compare_exchange_n(word, &expected, (uint32_t)t_tid, false,
                                               __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))) {
        list_add(node);
        clear_pending();
        return 0;
    }
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    return lock_slow(word, node, &dl);
}

/* The caller checked that this thread owns *word. */
static inline void robust_release(uint32_t *word, uintptr_t *node)
{
    set_pending(&node[1]);
    list_del(node);
    BARRIER();
    uint32_t old = __atomic_exchange_n(word, 0, __ATOMIC_RELEASE);
    if (MP__UNLIKELY(old & MP__LOCK_WAITERS))
        mp__futex_wake(word, 1);
    clear_pending();
}

static inline bool owned_by_me(const uint32_t *word)
{
    return t_tid != 0 &&
           (__atomic_load_n(word, __ATOMIC_RELAXED) & MP__LOCK_TID) == (uint32_t)t_tid;
}

/* ---- mp_lock -------------------------------------------------------------- */

/* Zeroes a lock of either kind (all-zero is unlocked) once this thread can
 * use robust locks at all. */
static int robust_init(void *l, size_t size)
{
    if (!l)
        return -EINVAL;
    int rc = thread_ready();
    if (rc < 0)
        return rc;
    memset(l, 0, size);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return 0;
}

int mp_lock_init(mp_lock *l)
{
    return robust_init(l, sizeof *l);
}

int mp_lock_acquire(mp_lock *l, int timeout_ms)
{
    if (MP__UNLIKELY(!l))
        return -EINVAL;
    int rc = thread_ready();
    if (MP__UNLIKELY(rc < 0))
        return rc;
    return robust_acquire_ms(&l->state, l->robust, timeout_ms);
}

int mp__lock_acquire_dl(mp_lock *l, const mp__deadline *dl)
{
    int rc = thread_ready();
    if (rc < 0)
        return rc;
    return robust_acquire(&l->state, l->robust, dl);
}

bool mp__lock_held(const mp_lock *l)
{
    return l && owned_by_me(&l->state);
}

int mp_lock_release(mp_lock *l)
{
    if (MP__UNLIKELY(!l))
        return -EINVAL;
    if (MP__UNLIKELY(!owned_by_me(&l->state)))
        return -EPERM;
    robust_release(&l->state, l->robust);
    return 0;
}

void mp_lock_destroy(mp_lock *l)
{
    (void)l; /* nothing to free: the lock is plain data */
}

/* ---- mp_rlock -------------------------------------------------------------- */

int mp_rlock_init(mp_rlock *l)
{
    return robust_init(l, sizeof *l);
}

int mp_rlock_acquire(mp_rlock *l, int timeout_ms)
{
    if (MP__UNLIKELY(!l))
        return -EINVAL;
    int rc = thread_ready();
    if (MP__UNLIKELY(rc < 0))
        return rc;
    if (owned_by_me(&l->state)) {
        if (l->depth == UINT32_MAX)
            return -EOVERFLOW;
        l->depth++;
        return 0;
    }
    rc = robust_acquire_ms(&l->state, l->robust, timeout_ms);
    if (rc == 0 || rc == -EOWNERDEAD)
        l->depth = 1;
    return rc;
}

int mp_rlock_release(mp_rlock *l)
{
    if (MP__UNLIKELY(!l))
        return -EINVAL;
    if (MP__UNLIKELY(!owned_by_me(&l->state)))
        return -EPERM;
    if (l->depth > 1) {
        l->depth--;
        return 0;
    }
    l->depth = 0;
    robust_release(&l->state, l->robust);
    return 0;
}

void mp_rlock_destroy(mp_rlock *l)
{
    (void)l;
}
