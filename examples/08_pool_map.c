/* Example 8: Pool.map - squares of [1..6] on a pool of 4 */
/*
 * Python:
 *     pool = Pool(4)
 *     print(pool.map(lambda x: x * x, [1, 2, 3, 4, 5, 6]))   # [1, 4, 9, 16, 25, 36]
 *
 * mp_pool_map takes the inputs as an array of fixed-size elements and
 * writes each result at the same index of the output array; chunksize 0
 * lets the pool choose (Python's rule, which keeps tiny tasks cheap).
 */
#include <mproc.h>

#include <stdio.h>

static int square(const void *in, size_t in_len, void *out, size_t *out_len)
{
    (void)in_len;
    int x = *(const int *)in;
    *(int *)out = x * x;
    *out_len = sizeof(int);
    return 0;
}

int main(void)
{
    mp_pool *pool;
    int rc = mp_pool_new(&pool, &(mp_pool_opts){ .processes = 4 });
    if (rc < 0) {
        fprintf(stderr, "mp_pool_new: %s\n", mp_strerror(rc));
        return 1;
    }
    int in[6] = { 1, 2, 3, 4, 5, 6 }, out[6];
    rc = mp_pool_map(pool, square, in, sizeof(int), 6, out, sizeof(int), 0);
    if (rc < 0) {
        fprintf(stderr, "map: %s\n", mp_strerror(rc));
        return 1;
    }
    printf("[");
    for (int i = 0; i < 6; i++)
        printf("%s%d", i ? ", " : "", out[i]);
    printf("]\n");
    mp_pool_close(pool);
    mp_pool_join(pool);
    mp_pool_free(pool);
    static const int want[6] = { 1, 4, 9, 16, 25, 36 };
    for (int i = 0; i < 6; i++)
        if (out[i] != want[i])
            return 1;
    return 0;
}
