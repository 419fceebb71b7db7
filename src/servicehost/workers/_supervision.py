"""What every worker model shares: the Component protocol the host drives, live counters kept
per worker and summed on read, heartbeats for hung-worker detection, and the report of work
that did not finish.

Counters are plain attributes of a per-thread :class:`WorkerStats`, written only by their own
thread (no lock on the hot path) and summed when someone reads them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Self, runtime_checkable

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


@dataclass(frozen=True)
class Counters:
    """A snapshot of one component's live counters."""

    name: str
    submitted: int
    completed: int
    failed: int
    in_flight: int
    queue_depth: int
    latency_p50: float | None = None
    """Median run time of the sampled tasks, in seconds (None before any sample)."""
    latency_p99: float | None = None

    @classmethod
    def from_workers(cls, name: str, submitted: int, workers: Iterable[WorkerStats], *, not_run: int = 0) -> Counters:
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
        return cls(name, submitted, completed, failed, in_flight, queue_depth, p50, p99)

    def summary(self) -> str:
        """One short line, e.g. for systemd's ``STATUS=``."""
        return (
            f"{self.name}: {self.completed} done, {self.failed} failed, "
            f"{self.in_flight} running, {self.queue_depth} queued"
        )


@dataclass(frozen=True)
class Beat:
    """One worker's heartbeat: busy since when (``None``: idle, which is always healthy)."""

    component: str
    worker: str
    busy_since: float | None
    current: str = ""

    def hung(self, now: float, hang_timeout: float) -> bool:
        return self.busy_since is not None and now - self.busy_since > hang_timeout


@dataclass(frozen=True)
class Unfinished:
    """What a component still held when its drain ended at the deadline.

    ``queued`` tasks never started. ``to_waiters`` of them had a waiter (``submit_result``,
    ``map``), which was told (QueueClosed); the others were handed back (``handed_back``) to the
    component's ``on_unfinished`` hook when it has one, so a durable source can take them back.
    ``running`` tasks were still executing on threads Python cannot kill (or in processes that
    were then terminated). See ``workers/_tasks.py`` for the rule every model keeps.
    """

    component: str
    kind: str
    queued: int
    running: int
    handed_back: bool = False
    running_what: Sequence[str] = field(default_factory=tuple)
    to_waiters: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.running

    @staticmethod
    def merge(first: Unfinished | None, later: Unfinished | None) -> Unfinished | None:
        """Two drains of one component (a forced stop overtaking the graceful one): the tasks both
        took back, and what still ran at the later one."""
        if first is None or later is None:
            return later if first is None else first
        merged: dict[str, Any] = {
            "queued": first.queued + later.queued,
            "to_waiters": first.to_waiters + later.to_waiters,
            "handed_back": first.handed_back or later.handed_back,
        }
        by_stage = getattr(later, "queued_by_stage", None)
        if by_stage is not None:
            before = getattr(first, "queued_by_stage", {})
            merged["queued_by_stage"] = {k: before.get(k, 0) + by_stage.get(k, 0) for k in {*before, *by_stage}}
        return replace(later, **merged)


HandBack = Callable[[list[Any]], object]
"""``on_unfinished(items)``: receives the work a component could not finish, to re-queue it."""


@runtime_checkable
class Component(Protocol):
    """A worker model a service composes; the host drives it (``Service.use``).

    Order on stop: ``close()`` (stop intake) → ``drain(deadline)`` (finish in-flight work) →
    report what is left. All calls come from the host thread except ``beats``/``counters``.
    """

    name: str

    def close(self) -> None:
        """Stop taking new work. Idempotent; never blocks."""

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Finish accepted work until ``deadline``; return what is left (None: nothing).

        May be called more than once, even concurrently: at a forced stop the host drains
        every component with an expired deadline while the stopper may still be draining it.
        Work is handed back at most once."""

    def counters(self) -> Counters: ...

    def beats(self) -> Iterable[Beat]: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


def describe(fn: Any) -> str:
    """A short name of a task's callable for reports (``module.qualname``)."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)
