#!/usr/bin/env python3
"""bench/py/process.py [N] - the Python peer of bench_process: start and join
N multiprocessing.Process one at a time (default 500), the target returning
at once.  One run; prints one @bench line (processes per second) and an @rss
line, as bench/bench.h describes.

The start method is forced to "fork", which is the default on Linux up to
Python 3.13 (3.14 switches to "forkserver"), so the comparison with fork(2)
stays like for like.  Python is about 14x slower than fork+waitpid here, so
bench_process runs fewer processes than the C peers; the rate per second
compares directly.
"""
import multiprocessing as mp
import resource
import sys
import time


def nothing():
    pass


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        if p.exitcode != 0:
            sys.exit(f"child exit code {p.exitcode}")
    dt = time.perf_counter() - t0
    print(f"@bench bench=process impl=python metric=start_join value={n / dt:.6g} unit=proc/s")
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"@rss bench=process impl=python value={max(self_kib, kids_kib)} unit=KiB")


if __name__ == "__main__":
    main()
