#!/usr/bin/env python3
"""Python peer of bench/bench_pool.c: multiprocessing.Pool on the same work.

One run of each metric; prints @bench lines (bench/bench.h format) and an
@rss line.  Usage: pool.py PROCESSES MAP_N APPLY_N
"""
import multiprocessing as mp
import resource
import sys
import time


def square(x):
    return x * x


def main():
    procs, map_n, apply_n = (int(a) for a in sys.argv[1:4])
    ctx = mp.get_context("fork")

    t0 = time.perf_counter()
    pool = ctx.Pool(procs)
    pool.close()
    pool.join()
    create = time.perf_counter() - t0

    pool = ctx.Pool(procs)
    square(1)
    t0 = time.perf_counter()
    out = pool.map(square, range(map_n))  # default chunksize
    tmap = time.perf_counter() - t0
    assert out[-1] == (map_n - 1) ** 2

    t0 = time.perf_counter()
    rs = [pool.apply_async(square, (i,)) for i in range(apply_n)]
    got = [r.get() for r in rs]
    tapply = time.perf_counter() - t0
    assert got[-1] == (apply_n - 1) ** 2
    pool.close()
    pool.join()

    def rep(metric, value, unit):
        print(f"@bench bench=pool impl=python-multiprocessing metric={metric} "
              f"value={value:.6g} unit={unit}")

    rep("map_per_task", tmap / map_n * 1e9, "ns")
    rep("apply_async_per_task", tapply / apply_n * 1e9, "ns")
    rep("create_teardown", create * 1e3, "ms")
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"@rss bench=pool impl=python-multiprocessing value={max(self_kb, kids_kb)} unit=KiB")


if __name__ == "__main__":
    main()
