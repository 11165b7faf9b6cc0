/* Example 10: queue between processes - one puts a message, another gets it */
/*
 * Python:  q = Queue()
 *          def writer(): time.sleep(1); q.put("hello from the writer")
 *          def reader(): time.sleep(2); print(q.get())
 *          start both, join both
 *
 * In C the queue is created before the processes start, so both inherit it
 * (like fork).  The message lives in shared memory as soon as mp_queue_put
 * returns: the writer may exit at once and nothing is lost (Python's Queue
 * needs its feeder thread flushed first).  The reader checks that the
 * message arrived intact.
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char text[] = "hello from the writer";
static int scale_ms;

static void pause_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static int writer(void *arg)
{
    mp_queue *q = arg;
    pause_ms(1 * scale_ms);
    int rc = mp_queue_put(q, text, sizeof text, MP_FOREVER);
    printf("%s (pid %d) put: \"%s\"\n", mp_current_process_name(), (int)getpid(), text);
    return rc == 0 ? 0 : 1;
}

static int reader(void *arg)
{
    mp_queue *q = arg;
    pause_ms(2 * scale_ms);
    char *msg = NULL;
    size_t len = 0;
    int rc = mp_queue_get_alloc(q, (void **)&msg, &len, 5000);
    if (rc < 0) {
        fprintf(stderr, "reader: %s\n", mp_strerror(rc));
        return 1;
    }
    printf("%s (pid %d) got: \"%s\"\n", mp_current_process_name(), (int)getpid(), msg);
    int ok = len == sizeof text && memcmp(msg, text, len) == 0;
    free(msg);
    return ok ? 0 : 2;
}

int main(void)
{
    scale_ms = getenv("MP_DEMO") ? 100 : 1000; /* the seed's 1 s and 2 s */
    mp_queue *q;
    int rc = mp_queue_new(&q, NULL);
    if (rc < 0) {
        fprintf(stderr, "mp_queue_new: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_process *w = NULL, *r = NULL;
    rc = mp_process_new(&w, writer, q, &(mp_process_opts){ .name = "writer" });
    if (rc == 0)
        rc = mp_process_new(&r, reader, q, &(mp_process_opts){ .name = "reader" });
    if (rc == 0)
        rc = mp_process_start(w);
    if (rc == 0)
        rc = mp_process_start(r);
    int cw = -1, cr = -1;
    if (rc == 0)
        rc = mp_process_join(w, 10000);
    if (rc == 0)
        rc = mp_process_join(r, 10000);
    if (rc < 0) {
        fprintf(stderr, "process: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_process_exitcode(w, &cw);
    mp_process_exitcode(r, &cr);
    mp_process_free(w);
    mp_process_free(r);
    int ok = cw == 0 && cr == 0 && mp_queue_empty(q);
    mp_queue_free(q);
    printf("%s\n", ok ? "ok: the message crossed between the two processes" : "FAILED");
    return ok ? 0 : 1;
}
