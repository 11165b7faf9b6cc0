/* src/sync.c - the process-shared semaphore, event, condition and barrier.
 *
 * Each object's shared words and their encodings are documented next to its
 * struct in include/mproc/sync.h.  Common rules here:
 *  - every wait sleeps through mp__wait_rescue (mp__wait_word plus a re-check
 *    every MP_SYNC_RESCUE_MS), so a process killed between changing a word
 *    and waking the sleepers delays them, never strands them;
 *  - every state change is a single atomic operation on one word, so a
 *    SIGKILL at any instant leaves each word in a state the encoding allows;
 *  - the uncontended paths make no system call: wake-ups are issued only
 *    when a waiter count or WAITERS bit says someone may sleep.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "internal/core.h"
#include "internal/lock.h"

/* ---- mp_sem ------------------------------------------------------------------ */

int mp_sem_init(mp_sem *s, unsigned value, unsigned max)
{
    if (!s || value > INT_MAX || max > INT_MAX || (max > 0 && value > max))
        return -EINVAL;
    memset(s, 0, sizeof *s);
    s->max = max;
    __atomic_store_n(&s->value, value, __ATOMIC_RELEASE);
    return 0;
}

static inline bool sem_take(mp_sem *s)
{
    uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    while (v > 0)
        if (__atomic_compare_exchange_n(&s->value, &v, v - 1, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return true;
    return false;
}

int mp_sem_acquire(mp_sem *s, int timeout_ms)
{
    if (MP__UNLIKELY(!s))
        return -EINVAL;
    if (MP__LIKELY(sem_take(s)))
        return 0;
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    if (dl.nowait)
        return -EAGAIN;
    /* Register before the last look at value: a release that comes after
     * our look sees waiters > 0 and wakes (both sides are seq_cst, so one
     * of them sees the other). */
    __atomic_fetch_add(&s->waiters, 1, __ATOMIC_SEQ_CST);
    int rc;
    for (;;) {
        if (__atomic_load_n(&s->value, __ATOMIC_SEQ_CST) > 0 && sem_take(s)) {
            rc = 0;
            break;
        }
        rc = mp__wait_rescue(&s->value, 0, &dl);
        if (rc < 0)
            break;
    }
    uint32_t left = __atomic_sub_fetch(&s->waiters, 1, __ATOMIC_SEQ_CST);
    /* Leaving without a unit: a release may have woken us, so pass the
     * wake-up on rather than swallow it. */
    if (rc < 0 && left > 0 && __atomic_load_n(&s->value, __ATOMIC_SEQ_CST) > 0)
        mp__futex_wake(&s->value, 1);
    return rc;
}

int mp_sem_release(mp_sem *s)
{
    if (MP__UNLIKELY(!s))
        return -EINVAL;
    uint32_t lim = s->max ? s->max : INT_MAX;
    uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    do {
        if (v >= lim)
            return -EOVERFLOW;
    } while (!__atomic_compare_exchange_n(&s->value, &v, v + 1, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED));
    if (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) > 0)
        mp__futex_wake(&s->value, 1);
    return 0;
}

int mp_sem_value(mp_sem *s)
{
    if (!s)
        return -EINVAL;
    return (int)__atomic_load_n(&s->value, __ATOMIC_ACQUIRE);
}

void mp_sem_destroy(mp_sem *s)
{
    (void)s;
}

/* ---- mp_event ------------------------------------------------------------------ */

#define EV_SET     1u
#define EV_WAITERS 2u
#define EV_GEN     4u /* bits 2-31: + 1 each time a clear event is set */

int mp_event_init(mp_event *e)
{
    if (!e)
        return -EINVAL;
    memset(e, 0, sizeof *e);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return 0;
}

int mp_event_set(mp_event *e)
{
    if (!e)
        return -EINVAL;
    uint32_t v = __atomic_load_n(&e->state, __ATOMIC_RELAXED);
    do {
        if (v & EV_SET)
            return 0; /* already set: nobody sleeps on a set event */
    } while (!__atomic_compare_exchange_n(&e->state, &v,
                                          ((v & ~(EV_WAITERS)) + EV_GEN) | EV_SET, false,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    if (v & EV_WAITERS)
        mp__futex_wake(&e->state, INT_MAX);
    return 0;
}

int mp_event_clear(mp_event *e)
{
    if (!e)
        return -EINVAL;
    __atomic_fetch_and(&e->state, ~EV_SET, __ATOMIC_SEQ_CST);
    return 0;
}

bool mp_event_is_set(mp_event *e)
{
    return e && (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) & EV_SET);
}

int mp_event_wait(mp_event *e, int timeout_ms)
{
    if (!e)
        return -EINVAL;
    uint32_t v = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
    if (v & EV_SET)
        return 0;
    /* "Once set": a set followed by a clear while we sleep still counts,
     * which the generation tells (as Python's wait returns True then). */
    uint32_t gen0 = v & ~(EV_SET | EV_WAITERS);
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    for (;;) {
        if ((v & EV_SET) || (v & ~(EV_SET | EV_WAITERS)) != gen0)
            return 0;
        if (!(v & EV_WAITERS)) {
            if (dl.nowait)
                return -EAGAIN;
            if (!__atomic_compare_exchange_n(&e->state, &v, v | EV_WAITERS, false,
                                             __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE))
                continue;
            v |= EV_WAITERS;
        }
        int rc = mp__wait_rescue(&e->state, v, &dl);
        v = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
        if (rc < 0)
            return ((v & EV_SET) || (v & ~(EV_SET | EV_WAITERS)) != gen0) ? 0 : rc;
    }
}

void mp_event_destroy(mp_event *e)
{
    (void)e;
}

/* ---- mp_cond --------------------------------------------------------------------- */

#define CV_FIELD    UINT64_C(0xfffff) /* 20 bits */
#define CV_WAITER   UINT64_C(1)
#define CV_GRANT    (UINT64_C(1) << 20)
#define CV_GEN      (UINT64_C(1) << 40)
#define CV_WAITERS(s) ((s) & CV_FIELD)
#define CV_GRANTS(s)  (((s) >> 20) & CV_FIELD)
#define CV_GENOF(s)   ((s) >> 40)

int mp_cond_init(mp_cond *c)
{
    if (!c)
        return -EINVAL;
    memset(c, 0, sizeof *c);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return 0;
}

/* Takes a grant if one is there for a waiter registered in generation gen0. */
static bool cond_take(mp_cond *c, uint64_t gen0)
{
    uint64_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
    while (CV_GENOF(st) != gen0 && CV_GRANTS(st) > 0)
        if (__atomic_compare_exchange_n(&c->state, &st, st - CV_GRANT, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return true;
    return false;
}

/* The wait ended without a grant seen: take one if it came meanwhile, else
 * withdraw the registration.  Returns true when it took a grant.  A
 * registered waiter's unit is always in waiters + grants, so when no grant
 * is left its unit is among the waiters and the decrement cannot underflow. */
static bool cond_take_or_leave(mp_cond *c, uint64_t gen0)
{
    uint64_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
    for (;;) {
        if (CV_GENOF(st) != gen0 && CV_GRANTS(st) > 0) {
            if (__atomic_compare_exchange_n(&c->state, &st, st - CV_GRANT, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return true;
        } else {
            if (CV_WAITERS(st) == 0)
                mp__panic("mp_cond %p: waiter count underflow", (void *)c);
            if (__atomic_compare_exchange_n(&c->state, &st, st - CV_WAITER, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return false;
        }
    }
}

int mp_cond_wait(mp_cond *c, mp_lock *l, int timeout_ms)
{
    if (!c || !l)
        return -EINVAL;
    if (!mp__lock_held(l))
        return -EPERM;
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);

    uint64_t st = __atomic_load_n(&c->state, __ATOMIC_RELAXED), nst;
    do {
        if (CV_WAITERS(st) == CV_FIELD)
            return -EOVERFLOW;
        nst = st + CV_WAITER;
    } while (!__atomic_compare_exchange_n(&c->state, &st, nst, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED));
    uint64_t gen0 = CV_GENOF(nst);
    mp_lock_release(l);

    int rc;
    for (;;) {
        /* seq before state: a notify that lands after this load bumps seq,
         * so the futex wait below returns at once. */
        uint32_t seen = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        if (cond_take(c, gen0)) {
            rc = 0;
            break;
        }
        rc = mp__wait_rescue(&c->seq, seen, &dl);
        if (rc < 0) {
            if (cond_take_or_leave(c, gen0))
                rc = 0;
            break;
        }
    }

    /* Held again on return, whatever happened: a handler's -EINTR does not
     * stop the re-acquire (the wait's own result is what we report). */
    mp__deadline forever = mp__deadline_from_ms(MP_FOREVER);
    int lr;
    while ((lr = mp__lock_acquire_dl(l, &forever)) == -EINTR)
        ;
    if (lr == -EOWNERDEAD)
        return -EOWNERDEAD;
    if (lr < 0)
        mp__panic("mp_cond_wait: re-acquiring %p failed with %d", (void *)l, lr);
    return rc;
}

int mp_cond_notify(mp_cond *c, int n)
{
    if (!c || n < 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    uint64_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE), nst, k;
    do {
        k = CV_WAITERS(st);
        if ((uint64_t)n < k)
            k = (uint64_t)n;
        if (k > CV_FIELD - CV_GRANTS(st))
            k = CV_FIELD - CV_GRANTS(st);
        if (k == 0)
            return 0;
        nst = st - k * CV_WAITER + k * CV_GRANT + CV_GEN; /* the generation wraps */
    } while (!__atomic_compare_exchange_n(&c->state, &st, nst, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_ACQUIRE));
    /* Grants are not tied to particular sleepers: wake them all, the ones
     * that find none go back to sleep. */
    __atomic_fetch_add(&c->seq, 1, __ATOMIC_RELEASE);
    mp__futex_wake(&c->seq, INT_MAX);
    return (int)k;
}

int mp_cond_notify_all(mp_cond *c)
{
    return mp_cond_notify(c, INT_MAX);
}

void mp_cond_destroy(mp_cond *c)
{
    (void)c;
}

/* ---- mp_barrier ----------------------------------------------------------------- */

#define BR_ARRIVED 0xffffu
#define BR_GEN_SHIFT 16
#define BR_GEN_MASK 0x7fffu
#define BR_BROKEN 0x80000000u
#define BR_GENOF(s) (((s) >> BR_GEN_SHIFT) & BR_GEN_MASK)

int mp_barrier_init(mp_barrier *b, unsigned parties)
{
    if (!b || parties == 0 || parties > BR_ARRIVED)
        return -EINVAL;
    memset(b, 0, sizeof *b);
    b->parties = parties;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return 0;
}

static inline uint32_t hist_bit(uint32_t gen)
{
    return 1u << (gen & 31);
}

/* Breaks the round st belongs to, unless it already ended or broke.
 * Returns true if this call broke it.  Once BROKEN is set the round can no
 * longer complete, so recording it in the history is then safe. */
static bool barrier_break(mp_barrier *b, uint32_t st)
{
    uint32_t gen = BR_GENOF(st);
    for (;;) {
        if ((st & BR_BROKEN) || BR_GENOF(st) != gen)
            return false;
        if (__atomic_compare_exchange_n(&b->state, &st, st | BR_BROKEN, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE))
            break;
    }
    __atomic_fetch_or(&b->broken, hist_bit(gen), __ATOMIC_SEQ_CST);
    mp__futex_wake(&b->state, INT_MAX);
    return true;
}

/* How round gen ended, for a waiter that finds the generation moved on. */
static int round_outcome(mp_barrier *b, uint32_t gen, int idx)
{
    return (__atomic_load_n(&b->broken, __ATOMIC_SEQ_CST) & hist_bit(gen)) ? -EPIPE : idx;
}

int mp_barrier_wait(mp_barrier *b, int timeout_ms)
{
    if (!b)
        return -EINVAL;
    uint32_t parties = b->parties;
    if (parties == 0 || parties > BR_ARRIVED)
        return -EINVAL;
    uint32_t st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE), gen;
    int idx;
    for (;;) {
        if (st & BR_BROKEN)
            return -EPIPE;
        uint32_t arrived = st & BR_ARRIVED;
        gen = BR_GENOF(st);
        if (arrived + 1 >= parties) {
            /* The last party opens the next round.  Its history bit is
             * cleared before the round becomes visible. */
            uint32_t ngen = (gen + 1) & BR_GEN_MASK;
            __atomic_fetch_and(&b->broken, ~hist_bit(ngen), __ATOMIC_SEQ_CST);
            if (!__atomic_compare_exchange_n(&b->state, &st, ngen << BR_GEN_SHIFT, false,
                                             __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE))
                continue;
            if (arrived > 0)
                mp__futex_wake(&b->state, INT_MAX);
            return (int)arrived;
        }
        if (__atomic_compare_exchange_n(&b->state, &st, st + 1, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_ACQUIRE)) {
            idx = (int)arrived;
            break;
        }
    }
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    for (;;) {
        st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
        if (BR_GENOF(st) != gen)
            return round_outcome(b, gen, idx);
        if (st & BR_BROKEN)
            return -EPIPE;
        int rc = mp__wait_rescue(&b->state, st, &dl);
        if (rc < 0) {
            /* Our own timeout (or a handler's -EINTR): break the round for
             * everyone, unless it completed or broke meanwhile. */
            st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
            while (BR_GENOF(st) == gen && !(st & BR_BROKEN)) {
                if (barrier_break(b, st))
                    return rc;
                st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
            }
            if (BR_GENOF(st) != gen)
                return round_outcome(b, gen, idx);
            return -EPIPE;
        }
    }
}

int mp_barrier_abort(mp_barrier *b)
{
    if (!b || b->parties == 0)
        return -EINVAL;
    for (;;) {
        uint32_t st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
        if ((st & BR_BROKEN) || barrier_break(b, st))
            return 0;
    }
}

int mp_barrier_reset(mp_barrier *b)
{
    if (!b || b->parties == 0)
        return -EINVAL;
    uint32_t st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
    for (;;) {
        if (!(st & BR_BROKEN)) {
            if ((st & BR_ARRIVED) == 0)
                return 0; /* empty and whole already */
            /* Waiters present: break their round first (they get -EPIPE). */
            barrier_break(b, st);
            st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
            continue;
        }
        uint32_t gen = BR_GENOF(st), ngen = (gen + 1) & BR_GEN_MASK;
        __atomic_fetch_or(&b->broken, hist_bit(gen), __ATOMIC_SEQ_CST);
        __atomic_fetch_and(&b->broken, ~hist_bit(ngen), __ATOMIC_SEQ_CST);
        if (__atomic_compare_exchange_n(&b->state, &st, ngen << BR_GEN_SHIFT, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
            mp__futex_wake(&b->state, INT_MAX);
            return 0;
        }
    }
}

void mp_barrier_destroy(mp_barrier *b)
{
    (void)b;
}
