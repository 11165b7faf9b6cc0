"""bench/py/lock.py - Python's peer for bench_lock: 2 processes x N
increments of a multiprocessing.Value under its get_lock(), one process per
CPU.  Prints one @bench line (the median of RUNS runs) and checks the count.

usage: lock.py [N] [RUNS] [run]   (defaults 1000000, 1)
With "run" (as bench_lock calls it, once per round) it prints a "# run" line
instead, so that only bench_lock's median lands in the table.
"""
import multiprocessing as mp
import os
import statistics
import sys
import time


def work(v, n, cpu, barrier):
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass
    barrier.wait()
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1


def one_run(n):
    ncpu = os.cpu_count() or 1
    v = mp.Value('q', 0)
    barrier = mp.Barrier(3)
    ps = [mp.Process(target=work, args=(v, n, i % ncpu, barrier)) for i in range(2)]
    for p in ps:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    for p in ps:
        p.join()
    elapsed = time.perf_counter() - t0
    if v.value != 2 * n:
        sys.exit("python_value: count %d, expected %d" % (v.value, 2 * n))
    return 2 * n / elapsed


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rates = [one_run(n) for _ in range(runs)]
    tag = "# run" if len(sys.argv) > 3 and sys.argv[3] == "run" else "@bench"
    print("%s bench=lock impl=python_value metric=ops_per_s value=%.6g unit=ops/s"
          % (tag, statistics.median(rates)), flush=True)


if __name__ == "__main__":
    main()
