/* Example 9: queue basics - Queue(3): full, empty, qsize and a timed put */
/*
 * Python:  q = Queue(3)
 *          q.put(1); q.full()            -> False
 *          q.put(2); q.put(3); q.full()  -> True
 *          q.put(4, True, 3)             -> raises Full after 3 s
 *          q.get() -> 1;  q.qsize() -> 2;  q.empty() -> False
 *
 * In C: mp_queue_new with .maxsize = 3.  Messages are bytes (here one int
 * each).  A timed put on a full queue returns -ETIMEDOUT (Python's Full),
 * -EAGAIN with timeout 0.  qsize, empty and full are exact, not estimates.
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAILED: %s\n", #cond);                            \
            return 1;                                                          \
        }                                                                      \
    } while (0)

int main(void)
{
    int wait_ms = getenv("MP_DEMO") ? 300 : 3000; /* the seed waits 3 s */
    mp_queue *q;
    int rc = mp_queue_new(&q, &(mp_queue_opts){ .maxsize = 3 });
    if (rc < 0) {
        fprintf(stderr, "mp_queue_new: %s\n", mp_strerror(rc));
        return 1;
    }
    int one = 1, two = 2, three = 3, four = 4;
    CHECK(mp_queue_put(q, &one, sizeof one, MP_FOREVER) == 0);
    printf("put 1            full() = %s\n", mp_queue_full(q) ? "True" : "False");
    CHECK(!mp_queue_full(q));
    CHECK(mp_queue_put(q, &two, sizeof two, MP_FOREVER) == 0);
    CHECK(mp_queue_put(q, &three, sizeof three, MP_FOREVER) == 0);
    printf("put 2, put 3     full() = %s\n", mp_queue_full(q) ? "True" : "False");
    CHECK(mp_queue_full(q));

    printf("put 4 with a %d ms timeout on the full queue...\n", wait_ms);
    rc = mp_queue_put(q, &four, sizeof four, wait_ms);
    printf("                 -> %s (%s)\n", mp_err_name(rc), mp_strerror(rc));
    CHECK(rc == -ETIMEDOUT);
    CHECK(mp_queue_put(q, &four, sizeof four, 0) == -EAGAIN);

    int v = 0;
    size_t len = 0;
    CHECK(mp_queue_get(q, &v, sizeof v, &len, MP_FOREVER) == 0);
    printf("get()            -> %d\n", v);
    CHECK(v == 1 && len == sizeof v);
    printf("qsize()          -> %zu\n", mp_queue_qsize(q));
    CHECK(mp_queue_qsize(q) == 2);
    printf("empty()          -> %s\n", mp_queue_empty(q) ? "True" : "False");
    CHECK(!mp_queue_empty(q));
    mp_queue_free(q);
    printf("ok\n");
    return 0;
}
