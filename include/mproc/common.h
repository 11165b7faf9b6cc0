/* mproc/common.h - conventions shared by every mproc module.
 *
 * Return values: every fallible call returns int, 0 (or a non-negative
 * count) on success and a negative error code on failure: -errno, or one of
 * the library's own codes MP_EOF, MP_ETASK, MP_EWORKER (all below -4095, so
 * they never collide with an errno).  mp_strerror() names every one.
 *
 * Timeouts are int milliseconds, relative to the call: MP_FOREVER (-1) waits
 * without limit and 0 never waits.  A wait that would block with 0 returns
 * -EAGAIN; a positive timeout that expires returns -ETIMEDOUT.  Inside, the
 * timeout becomes one CLOCK_MONOTONIC deadline, so neither a signal nor a
 * change of the wall clock shortens or stretches a wait.  The one exception:
 * a handler registered with mp_signal_on() that returns non-zero makes the
 * interrupted call return -EINTR.
 */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "version.h"
#include "error.h"

/* MP_API marks the public symbols; everything else in the shared library is
 * hidden (the library is built with -fvisibility=hidden). */
#if defined(MPROC_BUILDING) && defined(__GNUC__)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Wait without limit (any negative timeout_ms means the same). */
#define MP_FOREVER (-1)

/** Flags for named objects (mp_shm_open, mp_queue_open), like O_CREAT/O_EXCL. */
#define MP_CREATE 0x1
#define MP_EXCL   0x2

/** A message for any code an mproc call returned: the library's codes, any
 *  -errno, and a generic text for unknown values.  Never returns NULL; the
 *  string is static.  Thread-safe and async-signal-safe. */
MP_API const char *mp_strerror(int err);

/** The symbolic name of a code ("EAGAIN", "MP_EOF"), or "unknown" for a value
 *  that is no code.  Never returns NULL; static string.  Thread-safe. */
MP_API const char *mp_err_name(int err);

/** The version of the loaded library as "MAJOR.MINOR.PATCH". Never fails;
 *  the string is static. Thread-safe. */
MP_API const char *mp_version(void);

/** The loaded library's MP_VERSION_HEX, to compare with the header's. */
MP_API unsigned mp_version_hex(void);

#ifdef __cplusplus
}
#endif

#endif
