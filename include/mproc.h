/* mproc.h - Python's multiprocessing model for C on Linux.
 *
 * The one header a program includes.  Each module has its own header under
 * mproc/, listed here; see docs/man/ for one page per module.
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#if __has_include("mproc/process.h")
#include "mproc/process.h"
#endif
#if __has_include("mproc/shm.h")
#include "mproc/shm.h"
#endif
#if __has_include("mproc/sync.h")
#include "mproc/sync.h"
#endif
#if __has_include("mproc/conn.h")
#include "mproc/conn.h"
#endif
#if __has_include("mproc/queue.h")
#include "mproc/queue.h"
#endif
#if __has_include("mproc/signal.h")
#include "mproc/signal.h"
#endif
#if __has_include("mproc/pool.h")
#include "mproc/pool.h"
#endif

#endif
