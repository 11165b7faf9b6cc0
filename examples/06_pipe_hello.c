/* Example 6: Pipe - five children say hello to their parent on one pipe */
/*
 * Python:  fd1, fd2 = Pipe()
 *          def fun(name):
 *              time.sleep(3)
 *              fd2.send("hello " + str(name))
 *              print(os.getppid(), "----", os.getpid())
 *          five Process(target=fun, args=(i,)), start them all,
 *          then fd1.recv() five times and print, then join them all.
 *
 * In C the five children share end b (their messages never interleave, even
 * when they send at the same instant), and every process closes the ends it
 * does not use: the parent closes b once the children have started, each
 * child closes a.  That is what lets the parent see MP_EOF once the last
 * child is done, instead of counting messages.
 */
#include <mproc.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { KIDS = 5 };

typedef struct hello {
    mp_conn *a, *b; /* the pipe, as the child inherits it */
    int i;
} hello;

static int fun(void *arg)
{
    hello *h = arg;
    mp_conn_close(h->a); /* the child only sends */
    /* the seed sleeps 3 s; the demo tour shortens it */
    struct timespec nap = { getenv("MP_DEMO") ? 0 : 3, getenv("MP_DEMO") ? 200000000 : 0 };
    nanosleep(&nap, NULL);
    char msg[32];
    int n = snprintf(msg, sizeof msg, "hello %d", h->i);
    int rc = mp_conn_send(h->b, msg, (size_t)n);
    printf("%d ---- %d\n", (int)getppid(), (int)getpid());
    mp_conn_close(h->b);
    return rc == 0 ? 0 : 1;
}

int main(void)
{
    mp_conn *a, *b;
    int rc = mp_pipe(&a, &b, true);
    if (rc < 0) {
        fprintf(stderr, "mp_pipe: %s\n", mp_strerror(rc));
        return 1;
    }
    hello h[KIDS];
    mp_process *jobs[KIDS];
    for (int i = 0; i < KIDS; i++) {
        h[i] = (hello){ a, b, i };
        rc = mp_process_new(&jobs[i], fun, &h[i], NULL);
        if (rc == 0)
            rc = mp_process_start(jobs[i]);
        if (rc < 0) {
            fprintf(stderr, "process %d: %s\n", i, mp_strerror(rc));
            return 1;
        }
    }
    mp_conn_close(b); /* the parent only receives */

    int seen[KIDS] = { 0 }, got = 0, bad = 0;
    char buf[64];
    size_t len;
    while ((rc = mp_conn_recv(a, buf, sizeof buf - 1, &len, MP_FOREVER)) == 0) {
        buf[len] = '\0';
        printf("%s\n", buf);
        int i;
        if (sscanf(buf, "hello %d", &i) == 1 && i >= 0 && i < KIDS && !seen[i]++)
            got++;
        else
            bad++;
    }
    if (rc != MP_EOF)
        fprintf(stderr, "recv: %s\n", mp_strerror(rc));
    mp_conn_close(a);

    int failed = 0;
    for (int i = 0; i < KIDS; i++) {
        int code = -1;
        if (mp_process_join(jobs[i], MP_FOREVER) < 0 || mp_process_exitcode(jobs[i], &code) < 0 ||
            code != 0)
            failed++;
        mp_process_free(jobs[i]);
    }
    int ok = rc == MP_EOF && got == KIDS && bad == 0 && failed == 0;
    printf("%s\n", ok ? "ok: five hellos, then end of file; all children joined" : "FAILED");
    return ok ? 0 : 1;
}
