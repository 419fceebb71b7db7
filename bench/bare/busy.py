"""Bare baseline for the stop benchmark: no servicehost.

    python bare/busy.py [MODULES_FILE]

Imports every module named in MODULES_FILE first, if given (the stdlib modules a servicehost
service loads, so that interpreter finalization at exit has the same modules to tear down).
A producer thread keeps a bounded queue.Queue(64) full of the same CPU tasks as services/busy.py
for BENCH_WORKERS threads; SIGTERM → the producer stops, the workers finish what was queued,
the main thread joins them and the process exits; atexit writes the last completion time.
"""

import importlib
import sys

if len(sys.argv) > 1:
    with open(sys.argv[1], encoding="utf-8") as f:
        for name in f.read().split():
            try:
                importlib.import_module(name)
            except Exception:  # a module only importable in its original context: skipped
                pass

import atexit  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

SPIN = int(os.environ.get("BENCH_SPIN", "20000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
LAST = [0.0, 0]


def task(n):
    s = 0
    for i in range(n):
        s += i
    LAST[0] = time.time()
    LAST[1] += 1


@atexit.register
def _write_last():
    path = os.environ.get("BENCH_LAST_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{LAST[0]!r} {LAST[1]}\n")


q = queue.Queue(64)
stop = threading.Event()


def work():
    while (n := q.get()) is not None:
        task(n)


def produce():
    while not stop.is_set():
        try:
            q.put(SPIN, timeout=0.05)
        except queue.Full:
            pass
    for _ in range(WORKERS):
        q.put(None)


threads = [threading.Thread(target=work) for _ in range(WORKERS)] + [threading.Thread(target=produce)]
for t in threads:
    t.start()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
print("bare: ready", file=sys.stderr, flush=True)
stop.wait()
for t in threads:
    t.join()
