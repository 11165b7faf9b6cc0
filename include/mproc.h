/* mproc.h - Python's multiprocessing model for C on Linux.
 *
 * The one header a program includes.  Each module has its own header under
 * mproc/ and its own man page (mproc_<module>(3)); mproc(3) describes the
 * conventions they share: negative error codes, millisecond timeouts on a
 * monotonic deadline, ownership, and how mproc forks.
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"  /* errors, timeouts, version     mproc(3)        */
#include "mproc/process.h" /* Process                       mproc_process(3) */
#include "mproc/shm.h"     /* shared memory, Value/Array    mproc_shm(3)     */
#include "mproc/sync.h"    /* locks, semaphores, events...  mproc_sync(3)    */
#include "mproc/conn.h"    /* Pipe and connections          mproc_conn(3)    */
#include "mproc/queue.h"   /* Queue, JoinableQueue          mproc_queue(3)   */
#include "mproc/pool.h"    /* Pool                          mproc_pool(3)    */
#include "mproc/signal.h"  /* signals                       mproc_signal(3)  */

#endif
