"""What the worker models share to implement the component contract (``components.py``): live
counters kept per worker and summed on read (:func:`sum_counters`), the pause gate, and the
pause/close/shutdown methods every model would otherwise write again.

Counters are plain attributes of a per-thread :class:`WorkerStats`, written only by their own
thread (no lock on the hot path) and summed when someone reads them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Self

from ..components import Counters, Unfinished
from ..stopping import Deadline

#: One task in this many has its run time sampled for the latency figures.
LATENCY_SAMPLE_EVERY = 64


class WorkerStats:
    """Counters and heartbeat of one worker thread. Written only by that thread."""

    __slots__ = ("name", "completed", "failed", "busy_since", "current", "latencies", "_tick")

    def __init__(self, name: str) -> None:
        self.name = name
        self.completed = 0
        self.failed = 0
        self.busy_since: float | None = None  # monotonic time the current task began; None: idle
        self.current: Any = None  # the callable it is running, for the hung-worker report
        self.latencies: deque[float] = deque(maxlen=256)
        self._tick = LATENCY_SAMPLE_EVERY - 1  # the first task is sampled

    def sample(self, started: float, count: int = 1) -> None:
        """Record the run time of ``count`` tasks that started at ``started`` (sampled)."""
        self._tick += count
        if self._tick >= LATENCY_SAMPLE_EVERY:
            self._tick = 0
            self.latencies.append((time.monotonic() - started) / count)


class PauseGate:
    """What a paused component's workers wait at. ``paused`` is a plain attribute so the hot path
    checks it for free (``if gate.paused: gate.wait()``); only a paused worker blocks."""

    __slots__ = ("paused", "_open")

    def __init__(self) -> None:
        self.paused = False
        self._open = threading.Event()
        self._open.set()

    def pause(self) -> None:
        self._open.clear()
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._open.set()

    def wait(self) -> None:
        """Block until resumed (close() resumes every component, so a stop always gets through)."""
        self._open.wait()


class Drains:
    """``shutdown(timeout)`` and the ``with`` block, for a component used on its own (outside a
    service, whose host drains it): written once for every model."""

    def drain(self, deadline: Deadline) -> Unfinished | None:
        raise NotImplementedError

    def shutdown(self, timeout: float | None = None) -> Unfinished | None:
        """Close and drain with a deadline ``timeout`` seconds away (None: wait for all)."""
        return self.drain(Deadline.after(timeout))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class GatedIntake(Drains):
    """``pause``/``resume``/``paused``/``close`` for a component whose workers wait at
    ``self._gate`` (a :class:`PauseGate`) between tasks and whose intake is one queue,
    ``self._intake`` (a ``ClosableQueue``). Written once for ThreadPool, Pipeline, ProcessPool."""

    _gate: PauseGate
    _intake: Any  # ClosableQueue: what close() closes

    def pause(self) -> None:
        """Workers finish their current task, then take no more until ``resume``."""
        self._gate.pause()

    def resume(self) -> None:
        self._gate.resume()

    @property
    def paused(self) -> bool:
        return self._gate.paused

    def close(self) -> None:
        """Stop intake (producers get QueueClosed); workers still drain what was accepted.
        Never blocks. A paused component is resumed: it must still drain when the service stops."""
        self._intake.close()
        self.resume()


def sum_counters(name: str, submitted: int, workers: Iterable[WorkerStats], *, not_run: int = 0) -> Counters:
    """Sum per-worker counters. Queue depth is derived: accepted, not finished, not running,
    not taken back at a stop deadline (``not_run``)."""
    completed = failed = in_flight = 0
    samples: list[float] = []
    for w in workers:
        completed += w.completed
        failed += w.failed
        in_flight += w.busy_since is not None
        samples.extend(w.latencies)
    p50 = p99 = None
    if samples:
        samples.sort()
        p50 = samples[len(samples) // 2]
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    queue_depth = max(0, submitted - completed - failed - in_flight - not_run)
    return Counters(name, submitted, completed, failed, in_flight, queue_depth, p50, p99)


def describe(fn: Any) -> str:
    """A short name of a task's callable for reports (``module.qualname``)."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)
