"""What the worker models share to implement the component contract (``components.py``): live
counters kept per worker and summed on read (:func:`sum_counters`), the pause gate, and the
pause/hold/close/shutdown methods every model would otherwise write again.

Counters are plain attributes of a per-thread :class:`WorkerStats`, written only by their own
thread (no lock on the hot path) and summed when someone reads them. The hot path writes two
integers and one float per task (per chunk for bulk work: the count, and the busy time) and one
sampled run time in ``LATENCY_SAMPLE_EVERY``, counted on the histogram grid too; everything else a
status or a metrics scrape shows (p50/p95, the last error, busy/size, :func:`sum_measures`) is
derived on read or written only on a failure.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from itertools import islice
from typing import Any, Self

from ..components import TIME_BUCKETS, Counters, Histogram, Measures, Unfinished
from ..errors import describe_error
from ..stopping import Deadline

_monotonic = time.monotonic
#: One task in this many has its run time sampled for the latency figures.
LATENCY_SAMPLE_EVERY = 64
#: The most recent samples a read of the counters sorts for p50/p95/p99, shared out over the
#: workers (at least 16 each): 256 workers keep 65,536 samples, whose sort would hold the GIL
#: for milliseconds in every ``status`` while the pools are saturated.
QUANTILE_SAMPLES = 4096


class WorkerStats:
    """Counters and heartbeat of one worker thread. Written only by that thread."""

    __slots__ = ("name", "completed", "failed", "busy_since", "current", "latencies", "_tick", "last_error",
                 "busy_seconds", "durations", "duration_total", "restarts", "run_since")

    def __init__(self, name: str) -> None:
        self.name = name
        self.completed = 0
        self.failed = 0
        self.busy_since: float | None = None  # monotonic time the current task began; None: idle
        self.current: Any = None  # the callable it is running, for the hung-worker report
        self.latencies: deque[float] = deque(maxlen=256)
        self._tick = LATENCY_SAMPLE_EVERY - 1  # the first task is sampled
        self.last_error: tuple[float, str] | None = None  # (time.time(), "Type: message") of the last failure
        self.busy_seconds = 0.0  # time spent running tasks that ended (a running one: now - busy_since)
        self.durations = [0] * (len(TIME_BUCKETS) + 1)  # the sampled run times on the histogram grid
        self.duration_total = 0.0
        self.restarts = 0  # times this worker was replaced (a process pool's child)
        # A worker that times whole busy runs (ThreadPool: from the task it took without waiting
        # to the moment it is about to wait) instead of each task: when the current run began.
        self.run_since: float | None = None

    def error(self, exc: BaseException) -> None:
        """Remember ``exc`` as this worker's last failure (the failure path only; counting it is
        the caller's: a chunk counts its failures once at its end)."""
        self.last_error = (time.time(), describe_error(exc))

    def sample(self, started: float, count: int = 1, *, busy: bool = True) -> None:
        """Record the run time of ``count`` tasks that started at ``started``: added to the busy
        time (unless the worker times whole runs: ``busy=False``), and sampled (one in
        ``LATENCY_SAMPLE_EVERY``) for the latency figures."""
        took = _monotonic() - started
        if busy:
            self.busy_seconds += took
        self._tick += count
        if self._tick >= LATENCY_SAMPLE_EVERY:
            self.record(took, count)

    def idle(self) -> None:
        """End the current busy run (a worker that times runs, about to wait): its time joins
        ``busy_seconds``. ``run_since`` is cleared first, so a reader may miss the run for a
        moment (a metrics scrape never shows less than before) but never counts it twice."""
        since = self.run_since
        if since is not None:
            self.run_since = None
            self.busy_seconds += _monotonic() - since

    def record(self, took: float, count: int = 1) -> None:
        """The sampled part of :meth:`sample` (a worker loop that inlines the rest calls this once
        its ``_tick`` reaches ``LATENCY_SAMPLE_EVERY``): ``count`` tasks took ``took`` seconds."""
        self._tick = 0
        each = took / count
        self.latencies.append(each)
        self.durations[bisect_left(TIME_BUCKETS, each)] += 1
        self.duration_total += each


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

    def measures(self) -> Measures:
        """What a metrics scrape reads (``components.Measured``): summed from the model's
        ``_stats`` (a list of :class:`WorkerStats`, or one) and its ``_queue``, when it has one. A
        model that keeps them elsewhere overrides this."""
        stats = getattr(self, "_stats", ())
        return sum_measures([stats] if isinstance(stats, WorkerStats) else stats, getattr(self, "_queue", None))


class GatedIntake(Drains):
    """``pause``/``resume``/``paused``/``hold_intake``/``release_intake``/``close`` for a
    component whose workers wait at ``self._gate`` (a :class:`PauseGate`) between tasks and whose
    intake is one queue, ``self._intake`` (a ``ClosableQueue``). Written once for ThreadPool,
    Pipeline, ProcessPool."""

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

    def hold_intake(self) -> None:
        """A drain: producers block in ``submit``/``put`` as on a full queue, while the workers
        finish everything accepted (``lifecycle.py``). Never blocks."""
        self._intake.hold()

    def release_intake(self) -> None:
        """End a drain: blocked producers go on."""
        self._intake.release()

    def close(self) -> None:
        """Stop intake (producers get QueueClosed); workers still drain what was accepted.
        Never blocks. A paused component is resumed: it must still drain when the service stops."""
        self._intake.close()
        self.resume()


class _Reading(threading.local):
    quantiles = True


_reading = _Reading()


class without_quantiles:
    """``with without_quantiles(): component.counters()``: counters read on this thread leave the
    latency quantiles out (None) and skip sorting every sample — for a reader that does not show
    them (a metrics scrape: its histograms come from :func:`sum_measures`)."""

    def __enter__(self) -> None:
        _reading.quantiles = False

    def __exit__(self, *exc: object) -> None:
        _reading.quantiles = True


def sum_counters(name: str, submitted: int, workers: Iterable[WorkerStats], *, not_run: int = 0,
                 queue_capacity: int | None = None) -> Counters:
    """Sum per-worker counters. Queue depth is derived: accepted, not finished, not running,
    not taken back at a stop deadline (``not_run``). ``workers`` (size) is how many there are."""
    quantiles = _reading.quantiles
    completed = failed = in_flight = size = 0
    samples: list[float] = []
    last_error: tuple[float, str] | None = None
    every = workers if isinstance(workers, (list, tuple)) else list(workers)
    recent = max(16, QUANTILE_SAMPLES // max(1, len(every)))
    for w in every:
        size += 1
        completed += w.completed
        failed += w.failed
        in_flight += w.busy_since is not None
        if quantiles:
            _recent_into(samples, w.latencies, recent)
        error = w.last_error
        if error is not None and (last_error is None or error[0] > last_error[0]):
            last_error = error
    p50 = p95 = p99 = None
    if samples:
        samples.sort()
        p50, p95, p99 = (_quantile(samples, q) for q in (0.5, 0.95, 0.99))
    queue_depth = max(0, submitted - completed - failed - in_flight - not_run)
    return Counters(name, submitted, completed, failed, in_flight, queue_depth, p50, p99,
                    workers=size, queue_capacity=queue_capacity, latency_p95=p95,
                    last_error=None if last_error is None else last_error[1],
                    last_error_at=None if last_error is None else last_error[0])


def _recent_into(samples: list[float], latencies: deque[float], recent: int) -> None:
    """Append the ``recent`` newest of a worker's ``latencies`` to ``samples``. The iteration
    itself is one C call, but the iterator is made a bytecode before it: a worker that records a
    sample in between (a thread switch there) makes the deque raise RuntimeError. Read again then;
    after a few misses in a row the worker's samples are left out of this read (they are samples)."""
    for _ in range(_READ_TRIES):
        start = len(samples)
        try:
            samples.extend(islice(reversed(latencies), recent))
            return
        except RuntimeError:  # "deque mutated during iteration"
            del samples[start:]


#: Tries at reading one worker's recent samples while it records more (``_recent_into``).
_READ_TRIES = 8


def sum_measures(workers: Iterable[WorkerStats], queue: Any = None) -> Measures:
    """Sum the per-worker totals a metrics scrape reads (:class:`~servicehost.components.Measures`):
    busy time (the running tasks' so far included), sampled run times, restarts; and, given the
    component's ``ClosableQueue``, its sampled waits and rejected tasks."""
    now = time.monotonic()
    busy = total = 0.0
    restarts = 0
    grids = []
    for w in workers:
        busy += w.busy_seconds  # read before the run/task: one that just ended is counted once
        since = w.run_since  # a worker timing busy runs: the current run so far
        if since is None:
            since = w.busy_since  # else the running task so far
        if since is not None:
            busy += max(0.0, now - since)
        grids.append(w.durations)
        total += w.duration_total
        restarts += w.restarts
    counts = tuple(map(sum, zip(*grids))) if grids else Histogram().counts
    return Measures(
        busy_seconds=busy,
        task_duration=Histogram(counts, total),
        queue_wait=None if queue is None else queue.waits(),
        rejected=0 if queue is None else queue.rejected,
        restarts=restarts,
    )


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``ordered`` (nearest rank: a sample that was measured)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def describe(fn: Any) -> str:
    """A short name of a task's callable for reports (``module.qualname``)."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)
