"""A busy service for the stop benchmark: ``run`` keeps a ThreadPool full of CPU tasks.

Each task spins ``BENCH_SPIN`` iterations (about 1 ms) and then records ``time.time()``; at exit
(atexit: after the host has drained the pool) the service writes the time of the last task
completion and the task count to ``BENCH_LAST_FILE``. The parent measures, with ``time.time()``
too, when the process has exited after SIGTERM.
"""

from __future__ import annotations

import atexit
import os
import time

from servicehost import QueueClosed, Service, StopToken, ThreadPool

SPIN = int(os.environ.get("BENCH_SPIN", "20000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
LAST = [0.0, 0]  # time of the last completion, tasks completed (written under the GIL)


def task(n: int) -> None:
    s = 0
    for i in range(n):
        s += i
    LAST[0] = time.time()
    LAST[1] += 1


@atexit.register
def _write_last() -> None:
    path = os.environ.get("BENCH_LAST_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{LAST[0]!r} {LAST[1]}\n")


class Busy(Service):
    name = "bench-busy"

    def start(self) -> None:
        self.pool = self.use(ThreadPool(WORKERS, name="busy", queue_size=64))

    def run(self, stop: StopToken) -> None:
        submit = self.pool.submit
        try:
            while not stop.stop_requested:
                submit(task, SPIN)  # blocks while the queue is full; QueueClosed at the stop
        except QueueClosed:
            pass
