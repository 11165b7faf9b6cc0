/* Example 7: Pool with apply_async - 10 jobs on 4 workers, results by get */
/*
 * Python:
 *     def worker(msg):
 *         time.sleep(2); print(msg); return msg + " over"
 *     pool = Pool(4)
 *     results = [pool.apply_async(worker, ("hello %d" % i,)) for i in range(10)]
 *     pool.close(); pool.join()
 *     for r in results: print(r.get())
 *
 * Tasks run in forked workers of the same binary, so a task is a plain
 * function pointer; its input is copied to the worker and its result copied
 * back.  MP_DEMO=1 (make demo) shortens the sleep from 2 s to 100 ms.
 */
#include <mproc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int sleep_ms = 2000;

static int worker(const void *in, size_t in_len, void *out, size_t *out_len)
{
    const char *msg = in; /* in_len bytes including the terminating NUL */
    struct timespec ts = { sleep_ms / 1000, (long)(sleep_ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0)
        ;
    printf("%s (worker pid %d)\n", msg, (int)getpid());
    fflush(stdout);
    int n = snprintf(out, *out_len, "%s over", msg);
    if (n < 0 || (size_t)n >= *out_len)
        return 1;
    *out_len = (size_t)n + 1;
    (void)in_len;
    return 0;
}

int main(void)
{
    if (getenv("MP_DEMO"))
        sleep_ms = 100;
    mp_pool *pool;
    int rc = mp_pool_new(&pool, &(mp_pool_opts){ .processes = 4 });
    if (rc < 0) {
        fprintf(stderr, "mp_pool_new: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_result *results[10];
    for (int i = 0; i < 10; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "hello %d", i);
        rc = mp_pool_apply_async(pool, worker, msg, strlen(msg) + 1, &results[i]);
        if (rc < 0) {
            fprintf(stderr, "apply_async: %s\n", mp_strerror(rc));
            return 1;
        }
    }
    mp_pool_close(pool);
    rc = mp_pool_join(pool); /* every task done, every worker reaped */
    if (rc < 0) {
        fprintf(stderr, "join: %s\n", mp_strerror(rc));
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        char res[64], want[64];
        size_t len = sizeof res;
        rc = mp_result_get(results[i], res, &len, MP_FOREVER);
        snprintf(want, sizeof want, "hello %d over", i);
        if (rc < 0 || strcmp(res, want) != 0) {
            fprintf(stderr, "result %d: %s\n", i, rc < 0 ? mp_strerror(rc) : res);
            bad = 1;
        } else {
            printf("%s\n", res);
        }
        mp_result_free(results[i]);
    }
    mp_pool_free(pool);
    return bad;
}
