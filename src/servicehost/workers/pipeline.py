"""Pipeline: producer-consumer stages joined by bounded ClosableQueues.

``put(item)`` feeds the first stage. Each stage runs ``fn(item)`` on its own threads; what
``fn`` returns goes on to the next stage's queue, ``None`` drops the item (a filter), and the
last stage's return value is discarded::

    pipe = Pipeline(stages=[Stage("hash", digest, workers=4), Stage("store", save)])
    pipe.put(path)

Backpressure runs upstream: a full queue blocks the workers of the stage before it, and a full
first queue blocks ``put``. A stage's exception is logged with its traceback and counted; the
item goes no further (``Stage.on_error`` sees it). Items keep their order only through stages
with one worker.

Stopping is close-and-drain, stage by stage: ``close()`` closes the first queue; when the last
worker of a stage exits, it closes the next stage's queue; so ``drain`` finishes everything that
was accepted, in stage order, and the workers of stage *k+1* end after those of stage *k*.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..errors import QueueClosed
from ..stopping import Deadline
from ..components import Beat, Counters, HandBack, Histogram, Measures, Unfinished
from ._supervision import GatedIntake, PauseGate, WorkerStats, describe, sum_counters, sum_measures
from ._tasks import One, report_unfinished, take_back
from .queues import ClosableQueue

log = logging.getLogger("servicehost.workers")
_monotonic = time.monotonic


@dataclass(frozen=True)
class Stage:
    """One step of a :class:`Pipeline`: ``fn(item)`` on ``workers`` threads.

    ``fn`` returns the item for the next stage, or ``None`` to drop it. ``queue_size`` bounds
    the items waiting in front of this stage. ``on_error(item, exc)`` is called on the worker
    thread after a failure was logged and counted (a dead-letter hook); its own errors are
    logged too.
    """

    name: str
    fn: Callable[[Any], Any]
    workers: int = 1
    queue_size: int = 256
    on_error: Callable[[Any, BaseException], object] | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"stage {self.name}: workers must be >= 1, got {self.workers}")
        if self.queue_size < 1:
            raise ValueError(f"stage {self.name}: queue_size must be >= 1, got {self.queue_size}")


@dataclass(frozen=True)
class StageCounters(Counters):
    """One stage's counters. ``completed`` counts every item ``fn`` returned for, so it
    includes the ``dropped`` ones (``fn`` returned ``None``; not counted for the last stage)."""

    dropped: int = 0


#: A pipeline's report is an :class:`Unfinished` with ``queued_by_stage`` filled (the old name stays).
PipelineUnfinished = Unfinished


class _StageWorker(WorkerStats):
    """A stage worker's stats, plus items dropped and whether it waits for room downstream."""

    __slots__ = ("dropped", "forwarding")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.dropped = 0
        self.forwarding = False  # finished an item, blocked on the next stage's full queue


class _StageRunner:
    """The live parts of one stage: its queue, its workers, and how many are still alive."""

    def __init__(self, pipeline: str, stage: Stage) -> None:
        self.stage = stage
        self.name = stage.name
        self.label = f"{pipeline}/{stage.name}"
        # Items travel as one-item claims: at a deadline the drain takes back every item that a
        # worker has not started, even one a worker has just taken off the queue.
        self.queue: ClosableQueue[One] = ClosableQueue(stage.queue_size, track=True)
        self.not_run = 0
        self.stats = [_StageWorker(f"{self.label}-{i}") for i in range(stage.workers)]
        for s in self.stats:
            s.current = stage.fn
        self.alive = stage.workers
        self.next: _StageRunner | None = None
        self.threads: list[threading.Thread] = []


class Pipeline(GatedIntake):
    """Stages of worker threads joined by bounded queues; a :class:`~servicehost.workers.Component`.

    Threads start in the constructor and block in their stage's queue while idle.
    ``on_unfinished(items)`` receives, at a stop deadline, the items that did not get through.
    An item that has left the first stage is no longer the one given to ``put``, so each is
    handed back as a ``(stage_name, item)`` pair: the stage it was waiting to enter. Items
    still running at the deadline that finish afterwards, and whose output would go on to a
    next stage, are handed back the same way from their worker's thread (calls never overlap).
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        name: str = "pipeline",
        on_unfinished: HandBack | None = None,
    ) -> None:
        if not stages:
            raise ValueError(f"{name}: a pipeline needs at least one stage")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: stage names must be unique, got {names}")
        self.name = name
        self.on_unfinished = on_unfinished
        self._stages = [_StageRunner(name, s) for s in stages]
        self._intake = self._stages[0].queue
        for runner, following in zip(self._stages, self._stages[1:]):
            runner.next = following
        self._exit_lock = threading.Lock()
        self._hand_back_lock = threading.Lock()
        self._gate = PauseGate()
        for runner in self._stages:
            runner.threads = [
                threading.Thread(target=self._work, args=(runner, s), name=s.name, daemon=True)
                for s in runner.stats
            ]
        for runner in self._stages:
            for thread in runner.threads:
                thread.start()

    @property
    def stages(self) -> list[Stage]:
        return [r.stage for r in self._stages]

    # -- intake ---------------------------------------------------------------------------------
    def put(self, item: Any, timeout: float | None = None) -> None:
        """Feed ``item`` to the first stage; block while its queue is full (up to ``timeout``).

        Raises QueueClosed after ``close()``; QueueFull on timeout.
        """
        self._stages[0].queue.put(One((item,)), timeout)

    # -- the worker loop -------------------------------------------------------------------------
    def _work(self, runner: _StageRunner, stats: _StageWorker) -> None:
        get, settle = runner.queue.get, runner.queue.settle
        fn = runner.stage.fn
        following = runner.next
        try:
            while True:
                try:
                    claim = get()
                except QueueClosed:
                    return
                if self._gate.paused:
                    self._gate.wait()
                started = stats.busy_since = _monotonic()
                try:
                    item = claim.take()
                except IndexError:  # taken back at a stop deadline before it started
                    stats.busy_since = None
                    settle(claim)
                    continue
                try:
                    value = fn(item)
                except BaseException as exc:  # a stage's error never ends the worker
                    stats.failed += 1
                    stats.error(exc)
                    stats.busy_since = None
                    settle(claim)
                    self._failed(runner, item, exc)
                    continue
                stats.completed += 1
                stats.sample(started)
                if following is None or value is None:
                    stats.dropped += following is not None
                    stats.busy_since = None
                    settle(claim)
                    continue
                stats.forwarding = True
                stats.busy_since = None
                settle(claim)
                try:
                    following.queue.put(One((value,)))  # blocks while the next stage is full: backpressure
                except QueueClosed:  # only a drain that reached its deadline closes it this early
                    self._hand_back_late(following.name, value)
                finally:
                    stats.forwarding = False
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, runner.label, stats.name, exc_info=exc)
            raise
        finally:
            self._worker_exited(runner)

    def _failed(self, runner: _StageRunner, item: Any, exc: BaseException) -> None:
        logs.task_failed(log, runner.label, describe(runner.stage.fn), exc_info=exc)
        on_error = runner.stage.on_error
        if on_error is not None:
            try:
                on_error(item, exc)
            except BaseException as hook_exc:  # a broken hook must not end the worker either
                logs.task_failed(log, runner.label, describe(on_error), exc_info=hook_exc)

    def _worker_exited(self, runner: _StageRunner) -> None:
        with self._exit_lock:
            runner.alive -= 1
            last = runner.alive == 0
        if last and runner.next is not None:
            runner.next.queue.close()  # upstream is done: downstream drains what it has, then ends

    def _hand_back_late(self, stage: str, item: Any) -> None:
        if self.on_unfinished is None:
            logs.item_abandoned(log, self.name, stage)
            return
        with self._hand_back_lock:
            self.on_unfinished([(stage, item)])

    # -- control ----------------------------------------------------------------------------------
    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close, then wait for each stage's workers in order until ``deadline``.

        At the deadline every stage's queue is closed and emptied: the items are counted per
        stage and handed back as ``(stage_name, item)`` pairs; workers still running end after
        their current item. Safe to call again (a later call reports what is still running).
        """
        self.close()
        for runner in self._stages:
            for thread in runner.threads:
                thread.join(deadline.remaining())
        with self._hand_back_lock:  # one drain (or late hand-back) at a time
            left: list[tuple[str, Any]] = []
            queued_by_stage: dict[str, int] = {}
            for runner in self._stages:  # a no-op when every worker has ended
                queue = runner.queue
                queue.close()
                items = [item for _, taken, _ in take_back(queue) for item in taken]
                runner.not_run += len(items)
                queued_by_stage[runner.name] = len(items)
                left.extend((runner.name, item) for item in items)
            running = [
                f"{runner.name}: {describe(runner.stage.fn)}" for runner in self._stages for s in runner.stats
                if s.busy_since is not None or s.forwarding
            ]
            report = report_unfinished(self.name, "items", left, self.on_unfinished, running,
                                       queued_by_stage=queued_by_stage)
            return report

    # -- observation -------------------------------------------------------------------------------
    def stage_counters(self) -> list[StageCounters]:
        """Per stage: accepted, done (including dropped), failed, running, queued, run times."""
        return [
            StageCounters(
                **vars(sum_counters(r.label, r.queue.accepted, r.stats, not_run=r.not_run,
                                    queue_capacity=r.queue.maxsize)),
                dropped=sum(s.dropped for s in r.stats),
            )
            for r in self._stages
        ]

    def counters(self) -> Counters:
        """The whole pipeline: ``submitted`` = accepted by ``put``; ``completed`` = through the
        last stage; ``failed`` = failed in any stage; ``in_flight`` = running, or finished and
        waiting for room downstream; ``queue_depth`` = waiting in every queue. Items dropped by
        filters are in none of these but in each stage's ``dropped``. Run times: per stage only.
        """
        per_stage = self.stage_counters()
        forwarding = sum(s.forwarding for r in self._stages for s in r.stats)
        errors = [(c.last_error_at, c.last_error) for c in per_stage if c.last_error_at is not None]
        last_at, last_error = max(errors) if errors else (None, None)
        return Counters(
            self.name,
            submitted=per_stage[0].submitted,
            completed=per_stage[-1].completed,
            failed=sum(c.failed for c in per_stage),
            in_flight=sum(c.in_flight for c in per_stage) + forwarding,
            queue_depth=sum(c.queue_depth for c in per_stage),
            workers=sum(c.workers or 0 for c in per_stage),
            queue_capacity=sum(c.queue_capacity or 0 for c in per_stage),
            last_error=last_error,
            last_error_at=last_at,
        )

    def measures(self) -> Measures:
        """Per stage (``stages``, by stage name), and their sums for the whole pipeline."""
        stages = {r.name: sum_measures(r.stats, r.queue) for r in self._stages}
        each = list(stages.values())
        return Measures(
            busy_seconds=sum(m.busy_seconds for m in each),
            task_duration=sum((m.task_duration for m in each), Histogram()),
            queue_wait=sum((m.queue_wait or Histogram() for m in each), Histogram()),
            rejected=sum(m.rejected for m in each),
            stages=stages,
        )

    def beats(self) -> Iterator[Beat]:
        """One per worker; busy only while ``fn`` runs (not while waiting for room downstream)."""
        for runner in self._stages:
            for s in runner.stats:
                busy_since = s.busy_since
                yield Beat(self.name, s.name, busy_since, describe(s.current) if busy_since else "")
