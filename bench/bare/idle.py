"""Bare interpreter baseline for start→ready and RSS: no servicehost.

    python bare/idle.py MODULES_FILE [THREADS]

Imports every module named in MODULES_FILE (the standard-library modules a servicehost service
has loaded when it starts: see services/idle.py), starts THREADS (16) idle threads blocked in a
SimpleQueue, writes one line to stderr, and waits for SIGTERM.
"""

import importlib
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    for name in f.read().split():
        try:
            importlib.import_module(name)
        except Exception:  # a module only importable in its original context: skipped
            pass

import signal  # noqa: E402
import threading  # noqa: E402
from queue import SimpleQueue  # noqa: E402

n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
q = SimpleQueue()


def idle():
    while q.get() is not None:
        pass


threads = [threading.Thread(target=idle, daemon=True) for _ in range(n)]
for t in threads:
    t.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
print("bare: ready", file=sys.stderr, flush=True)
stop.wait()
for _ in threads:
    q.put(None)
for t in threads:
    t.join()
