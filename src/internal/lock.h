/* src/internal/lock.h - the robust lock's internals shared inside mproc.
 *
 * Other modules embed mp_lock in their shared structures and call the public
 * functions; these helpers are for code that already holds a deadline or
 * must re-check words itself (mp_cond, the queue).
 */
#ifndef MPROC_INTERNAL_LOCK_H
#define MPROC_INTERNAL_LOCK_H

#include "internal/core.h"
#include "mproc/sync.h"

/* The lock word's bits (the kernel's robust-futex encoding, linux/futex.h). */
#define MP__LOCK_TID     0x3fffffffu /* FUTEX_TID_MASK */
#define MP__LOCK_DIED    0x40000000u /* FUTEX_OWNER_DIED */
#define MP__LOCK_WAITERS 0x80000000u /* FUTEX_WAITERS */

/* The calling thread's id, cached per thread (reset in a fork child). */
pid_t mp__tid(void);

/* mp_lock_acquire with a deadline the caller already converted. */
int mp__lock_acquire_dl(mp_lock *l, const mp__deadline *dl);

/* Whether the calling thread holds l (assert and precondition checks only). */
bool mp__lock_held(const mp_lock *l);

/* mp__wait_word that also returns 0 (re-check) every MP_SYNC_RESCUE_MS, so a
 * sleeper whose waker died between the state change and the wake-up still
 * sees the change.  Same codes as mp__wait_word. */
int mp__wait_rescue(uint32_t *addr, uint32_t expected, const mp__deadline *dl);

#endif
