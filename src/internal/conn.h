/* src/internal/conn.h - the connection module's test hook. */
#ifndef MPROC_INTERNAL_CONN_H
#define MPROC_INTERNAL_CONN_H

#include <stdbool.h>

/* Test only: when set, mp_pipe() behaves as on a kernel without RWF_NOWAIT
 * on pipes (its pipe ends are made O_NONBLOCK and every wait polls), so the
 * fallback path is tested where the kernel has the fast one. */
extern bool mp__conn_no_rwf_nowait;

#endif
