/* Example 2: shared array - a child sets element 2 to 1000, the parent sees it */
/*
 * Python:  shm = Array('i', 6)                 (six zeroed ints)
 *          p = Process(target=fun, args=(shm,)); p.start(); p.join()
 * where fun prints the six values and sets shm[2] = 1000.
 *
 * In C the array is MP_SHM_ARRAY(int, 6): zeroed memory shared with the
 * children started after it was allocated.  Writes go straight to the
 * shared pages: no copy, no message.
 */
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

static void show(const char *who, const int *arr)
{
    printf("%-22s", who);
    for (int i = 0; i < 6; i++)
        printf(" %d", arr[i]);
    printf("\n");
}

static int fun(void *arg)
{
    int *shm = arg;
    char who[64];
    snprintf(who, sizeof who, "child (pid %d) sees:", (int)getpid());
    show(who, shm);
    shm[2] = 1000;
    printf("child sets shm[2] = 1000\n");
    return 0;
}

int main(void)
{
    int *shm = MP_SHM_ARRAY(int, 6);
    if (!shm) {
        perror("mp_shm_alloc");
        return 1;
    }
    mp_process *p;
    int rc = mp_process_new(&p, fun, shm, NULL);
    if (rc == 0)
        rc = mp_process_start(p);
    if (rc == 0)
        rc = mp_process_join(p, MP_FOREVER);
    if (rc < 0) {
        fprintf(stderr, "process: %s\n", mp_strerror(rc));
        return 1;
    }
    int code = -1;
    mp_process_exitcode(p, &code);
    mp_process_free(p);
    show("parent sees:", shm);
    int ok = code == 0 && shm[2] == 1000;
    printf("%s\n", ok ? "ok: the parent sees the child's write" : "FAILED");
    mp_shm_free(shm);
    return ok ? 0 : 1;
}
