"""The baselines, pinned as code: what a careful programmer would write without servicehost.

Each in-process baseline has a ``prepare`` step (outside the timing: start threads, processes)
and a ``run`` step (timed) doing exactly the same work as ours: the same function on the same
items, and waiting until all of it is done.

* ``inline``           — ``for x in items: fn(x)`` on the calling thread;
* ``SimpleQueueLoop``  — N pre-started threads doing ``while (item := q.get()) is not None:
                         fn(item)``, fed in bulk (one ``put`` per item, then one ``None`` per
                         thread); done when every thread has ended;
* ``Tpe``              — ``concurrent.futures.ThreadPoolExecutor`` with its threads pre-started:
                         submit every item, then ``.result()`` each;
* ``TwoProcesses``     — two bare processes (multiprocessing, spawn context), started and warm
                         before the timing; each gets its half of the items over a Pipe,
                         computes it and sends the results back;
* bare interpreter scripts (``bare/``): the process-level baselines for import, start→ready,
  stop and RSS.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue
from typing import Any

BARE = Path(__file__).resolve().parent / "bare"
BARE_IDLE = BARE / "idle.py"  # same stdlib imports as a servicehost service + 16 idle threads
BARE_BUSY = BARE / "busy.py"  # worker threads, SIGTERM → finish in-flight work → exit


def inline(fn: Callable[[Any], Any], items: Sequence[Any]) -> None:
    for x in items:
        fn(x)


class SimpleQueueLoop:
    """N threads on one SimpleQueue; a fresh set per run (they end on their ``None``)."""

    def __init__(self, threads: int) -> None:
        self.n = threads
        self.threads: list[threading.Thread] = []
        self.q: SimpleQueue[Any] = SimpleQueue()

    def prepare(self, fn: Callable[[Any], Any]) -> None:
        q = self.q = SimpleQueue()

        def loop() -> None:
            while (item := q.get()) is not None:
                fn(item)

        self.threads = [threading.Thread(target=loop, daemon=True) for _ in range(self.n)]
        for t in self.threads:
            t.start()

    def run(self, items: Sequence[Any]) -> None:
        put = self.q.put
        for x in items:
            put(x)
        for _ in range(self.n):
            put(None)
        for t in self.threads:
            t.join()


class Tpe:
    """ThreadPoolExecutor with every thread started before the timing."""

    def __init__(self, threads: int) -> None:
        self.n = threads
        self.ex = ThreadPoolExecutor(max_workers=threads)
        barrier = threading.Barrier(threads + 1)
        for _ in range(threads):  # each blocks until all are up: one thread per task
            self.ex.submit(barrier.wait)
        barrier.wait()

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        submit = self.ex.submit
        futures = [submit(fn, x) for x in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        self.ex.shutdown(wait=True)


def _half_worker(conn: Any) -> None:
    """A bare spawned process: receive (fn, items), send back [fn(x) for x in items]; repeat."""
    while (job := conn.recv()) is not None:
        fn, items = job
        conn.send([fn(x) for x in items])


class TwoProcesses:
    """Two bare spawned processes, each computing its half of the items."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        for _ in range(2):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_half_worker, args=(child,), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def warm(self, fn: Callable[[Any], Any], item: Any) -> None:
        """Outside the timing: both processes are up and have imported ``fn``'s module."""
        for c in self.conns:
            c.send((fn, [item]))
        for c in self.conns:
            c.recv()

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        half = (len(items) + 1) // 2
        self.conns[0].send((fn, items[:half]))
        self.conns[1].send((fn, items[half:]))
        return self.conns[0].recv() + self.conns[1].recv()

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(10)
