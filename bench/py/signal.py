"""Python peer of bench/bench_signal.c: prints @bench lines.

usage: signal.py dispatch|pingpong N_DISPATCH N_PINGPONG
"""
import sys

# This file is named signal.py: keep its own directory off the import path,
# or "import signal" below would import this file instead of the stdlib.
sys.path = [p for p in sys.path[1:]]

import os  # noqa: E402
import signal as sig  # noqa: E402
import time  # noqa: E402


def dispatch(n):
    count = [0]

    def handler(signum, frame):
        count[0] += 1

    sig.signal(sig.SIGUSR1, handler)
    me = os.getpid()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        os.kill(me, sig.SIGUSR1)  # the handler runs before the next bytecode
    t1 = time.perf_counter_ns()
    sig.signal(sig.SIGUSR1, sig.SIG_DFL)
    assert count[0] == n
    return (t1 - t0) / n


def pingpong(n):
    mask = {sig.SIGUSR1}
    sig.pthread_sigmask(sig.SIG_BLOCK, mask)
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"r")
        for _ in range(n):
            sig.sigwait(mask)
            os.kill(parent, sig.SIGUSR1)
        os._exit(0)
    os.read(r, 1)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        os.kill(pid, sig.SIGUSR1)
        sig.sigwait(mask)
    t1 = time.perf_counter_ns()
    os.waitpid(pid, 0)
    sig.pthread_sigmask(sig.SIG_UNBLOCK, mask)
    return (t1 - t0) / n / 1000.0


def main():
    what, nd, np_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if what == "dispatch":
        v, unit, impl = dispatch(nd), "ns/signal", "python"
    else:
        v, unit, impl = pingpong(np_), "us/roundtrip", "python-sigwait"
    print(f"@bench bench=signal impl={impl} metric={what} value={v:.6g} unit={unit}",
          flush=True)


if __name__ == "__main__":
    main()
