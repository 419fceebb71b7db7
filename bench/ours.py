"""Ours: the same work as bench/baselines.py, done through servicehost.

Pools are built (threads/processes started) outside the timing, as the baselines' are; the
timed step submits every item and waits until all of it is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from servicehost.workers.thread_pool import ThreadPool

SERVICES = Path(__file__).resolve().parent / "services"
IDLE_SERVICE = SERVICES / "idle.py"  # ThreadPool(16), nothing to do
BUSY_SERVICE = SERVICES / "busy.py"  # ThreadPool(4) kept full of CPU tasks


class OursThreads:
    """A ThreadPool kept for every round (a service's pool lives as long as the service)."""

    def __init__(self, threads: int, **kwargs: Any) -> None:
        self.pool = ThreadPool(threads, name="bench", **kwargs)

    def submit_many(self, fn: Callable[[Any], Any], items: Sequence[Any], chunksize: int | None = None) -> None:
        """Bulk fire-and-forget, then wait: ``submit_many`` + ``join``."""
        self.pool.submit_many(fn, items, chunksize=chunksize)
        self.pool.join()

    def submit_each(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> None:
        """One ``submit`` per item (no chunking), then ``join``."""
        submit = self.pool.submit
        for x in items:
            submit(fn, x)
        self.pool.join()

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """Submit all, wait for every result, in order: ``map``."""
        return self.pool.map(fn, items)

    def completed(self) -> int:
        """Tasks completed so far (read outside the timing, to prove the work ran)."""
        return self.pool.counters().completed

    def close(self) -> None:
        self.pool.shutdown(timeout=30)


def process_pool_class() -> type:
    """servicehost's ProcessPool; ImportError/AttributeError when it does not exist (yet)."""
    from servicehost.workers.process_pool import ProcessPool

    for method in ("map", "shutdown", "drain"):
        if not callable(getattr(ProcessPool, method, None)):
            raise AttributeError(f"ProcessPool has no {method}()")
    return ProcessPool
