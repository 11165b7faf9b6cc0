#!/usr/bin/env python3
"""bench/py/queue.py [DIV] - the Python peers of bench_queue: multiprocessing
Queue and SimpleQueue on the same scenarios as bench/bench_queue.c, one run.

Python is about 30x slower, so the message counts are 1/5 of the C ones
(200,000 x 64 B, 40,000 x 4 KiB, 200,000 for 2->2, 2,000 round trips),
further divided by DIV (MP_BENCH_QUICK).  Rates are per second, so they
compare directly.  Prints @bench lines (see bench/bench.h) and @rss lines.
"""
import os
import sys

# This file is named queue.py: keep its directory off sys.path so that
# multiprocessing imports the standard library's queue module, not this one.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import multiprocessing as mp  # noqa: E402
import resource  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

STOP = 0xFFFFFFFFFFFFFFFF


def pin(cpu):
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def producer(q, start, count, size, ncons, cpu):
    pin(cpu)
    start.wait()
    pad = b"x" * (size - 8)
    pack = struct.Struct("<Q").pack
    for i in range(count):
        q.put(pack(i) + pad)
    for _ in range(ncons):
        q.put(pack(STOP) + pad)
    if hasattr(q, "join_thread"):  # Queue: wait for the feeder thread
        q.close()
        q.join_thread()


def consumer(q, start, nprod, which, ends, cpu):
    pin(cpu)
    start.wait()
    unpack = struct.Struct("<Q").unpack_from
    stops = 0
    while stops < nprod:
        (seq,) = unpack(q.get())
        if seq == STOP:
            stops += 1
    ends[which] = time.monotonic()


def throughput(ctx, kind, nprod, ncons, total, size, pinned):
    q = ctx.Queue() if kind == "Queue" else ctx.SimpleQueue()
    start = ctx.Event()
    ends = ctx.Array("d", ncons, lock=False)
    procs = [ctx.Process(target=consumer, args=(q, start, nprod, c, ends, 1 if pinned else None))
             for c in range(ncons)]
    procs += [ctx.Process(target=producer,
                          args=(q, start, total // nprod, size, ncons, 0 if pinned else None))
              for _ in range(nprod)]
    for p in procs:
        p.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    start.set()
    for p in procs:
        p.join()
    return (total // nprod * nprod) / (max(ends) - t0)


def pong(a, b, cpu):
    pin(cpu)
    while True:
        m = a.get()
        if m is None:
            break
        b.put(m)


def roundtrip(ctx, kind, cross, rounds):
    mk = ctx.Queue if kind == "Queue" else ctx.SimpleQueue
    a, b = mk(), mk()
    p = ctx.Process(target=pong, args=(a, b, 1 if cross else 0))
    p.start()
    pin(0)
    msg = b"x" * 64
    lat = []
    for i in range(-200, rounds):
        t0 = time.perf_counter_ns()
        a.put(msg)
        b.get()
        if i >= 0:
            lat.append((time.perf_counter_ns() - t0) / 1000.0)
    a.put(None)
    p.join()
    os.sched_setaffinity(0, range(os.cpu_count()))
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * (len(lat) - 1) + 0.5))]


def report(impl, metric, value, unit):
    print(f"@bench bench=queue impl={impl} metric={metric} value={value:.6g} unit={unit}",
          flush=True)


def main():
    div = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    ctx = mp.get_context("fork")
    for kind in ("Queue", "SimpleQueue"):
        impl = "python-" + kind
        report(impl, "1to1_64B", throughput(ctx, kind, 1, 1, 200000 // div, 64, True), "msgs/s")
        report(impl, "1to1_4KiB", throughput(ctx, kind, 1, 1, 40000 // div, 4096, True), "msgs/s")
        report(impl, "2to2_64B", throughput(ctx, kind, 2, 2, 200000 // div, 64, False), "msgs/s")
        for cross, name in ((False, "same"), (True, "cross")):
            p50, p99 = roundtrip(ctx, kind, cross, 2000 // div)
            report(impl, f"rtt_{name}_cpu_p50", p50, "us")
            report(impl, f"rtt_{name}_cpu_p99", p99, "us")
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"@rss bench=queue impl=python value={rss} unit=KiB", flush=True)


if __name__ == "__main__":
    main()
