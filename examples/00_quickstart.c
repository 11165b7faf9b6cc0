/* Example 0: quick start - a child process sends three messages on a queue */
#include <mproc.h>
#include <stdio.h>

static int producer(void *arg)
{
    mp_queue *q = arg;
    for (int i = 0; i < 3; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "hello %d from %s", i, mp_current_process_name());
        if (mp_queue_put(q, msg, (size_t)n + 1, MP_FOREVER) < 0)
            return 1;
    }
    return 0;                                /* the child's exit status */
}

int main(void)
{
    mp_queue *q;
    mp_process *p;
    int rc, code;
    if ((rc = mp_queue_new(&q, NULL)) < 0 || (rc = mp_process_new(&p, producer, q, NULL)) < 0 ||
        (rc = mp_process_start(p)) < 0) {
        fprintf(stderr, "mproc: %s\n", mp_strerror(rc));
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        char buf[64];
        size_t len;
        if ((rc = mp_queue_get(q, buf, sizeof buf, &len, 1000)) < 0) {
            fprintf(stderr, "get: %s\n", mp_strerror(rc));   /* e.g. -ETIMEDOUT */
            break;
        }
        printf("got: %s\n", buf);
    }
    mp_process_join(p, MP_FOREVER);
    mp_process_exitcode(p, &code);           /* 0, or -N if killed by signal N */
    mp_process_free(p);
    mp_queue_free(q);
    return code == 0 ? 0 : 1;
}
