#!/usr/bin/env python3
"""bench/py/pipe.py - the Python peer of bench/bench_pipe.c.

multiprocessing.Pipe() (duplex: a socketpair) with send_bytes/recv_bytes.

  pipe.py lat  CPU_PARENT CPU_CHILD N      64-byte round trips: median, p99 (us)
  pipe.py bulk CPU_SENDER CPU_RECEIVER TOTAL MSG   TOTAL bytes in MSG-byte messages (GB/s)

Prints @bench lines (see bench/bench.h); one measurement per invocation, the
C driver takes the medians over runs.
"""
import multiprocessing as mp
import os
import sys
import time


def pin(cpu):
    os.sched_setaffinity(0, {cpu})


def echo(conn, cpu, n):
    pin(cpu)
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def receiver(conn, cpu, count, ack):
    pin(cpu)
    got = 0
    for _ in range(count):
        got += len(conn.recv_bytes())
    ack.send_bytes(got.to_bytes(8, "little"))


def lat(cpu_parent, cpu_child, n):
    warm = 1000
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b, cpu_child, n + warm))
    p.start()
    pin(cpu_parent)
    msg = bytes(64)
    t = []
    now = time.perf_counter_ns
    for i in range(n + warm):
        t0 = now()
        a.send_bytes(msg)
        a.recv_bytes()
        if i >= warm:
            t.append(now() - t0)
    p.join()
    t.sort()
    med = t[len(t) // 2] / 1000.0
    p99 = t[min(len(t) - 1, int(0.99 * (len(t) - 1) + 0.5))] / 1000.0
    tag = "cpu%d%d" % (cpu_parent, cpu_child)
    print("@bench bench=pipe impl=python_pipe metric=rt64_%s_median value=%.6g unit=us" % (tag, med))
    print("@bench bench=pipe impl=python_pipe metric=rt64_%s_p99 value=%.6g unit=us" % (tag, p99))


def bulk(cpu_send, cpu_recv, total, size):
    count = total // size
    a, b = mp.Pipe()
    ack_r, ack_w = mp.Pipe(duplex=False)
    p = mp.Process(target=receiver, args=(b, cpu_recv, count, ack_w))
    p.start()
    pin(cpu_send)
    msg = bytes(size)
    t0 = time.perf_counter_ns()
    for _ in range(count):
        a.send_bytes(msg)
    got = int.from_bytes(ack_r.recv_bytes(), "little")
    dt = time.perf_counter_ns() - t0
    p.join()
    if got != count * size:
        sys.exit("bulk: received %d of %d bytes" % (got, count * size))
    tag = "cpu%d%d" % (cpu_send, cpu_recv)
    print("@bench bench=pipe impl=python_pipe metric=bulk64k_%s value=%.6g unit=GB/s"
          % (tag, count * size / dt))


if __name__ == "__main__":
    mp.set_start_method("fork")
    if sys.argv[1] == "lat":
        lat(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        bulk(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    sys.stdout.flush()
