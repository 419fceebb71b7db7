"""The component contract the core owns: what a worker model must offer the host (the
:class:`Component` protocol), and the records it reports — live :class:`Counters`, heartbeats
(:class:`Beat`) and, at a stop, what was left (:class:`Unfinished`). Worker models in
``workers/`` implement it; the host and the platforms read it. It imports nothing from ``workers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .stopping import Deadline

if TYPE_CHECKING:  # the same records to a type checker (``_records.py``)
    from dataclasses import dataclass as record
    from typing import NamedTuple
else:
    from ._records import NamedTuple, record


@record(frozen=True)
class Counters:
    """A snapshot of one component's live counters (what ``status`` and systemd's ``STATUS=``
    show). Fields are only ever added, each with a default, so a component written for an older
    contract still builds one; ``None``: the component cannot tell."""

    name: str
    submitted: int
    """Tasks accepted (a chunk counts its tasks)."""
    completed: int
    """Tasks that returned ("done")."""
    failed: int
    """Tasks that raised."""
    in_flight: int
    """Tasks running now: for a pool, its busy workers (a chunk being run counts once)."""
    queue_depth: int
    """Tasks accepted and not started."""
    latency_p50: float | None = None
    """Median run time of the sampled tasks, in seconds (None before any sample)."""
    latency_p99: float | None = None
    workers: int | None = None
    """How many workers (threads, processes) serve it: ``in_flight``/``workers`` is busy/size."""
    queue_capacity: int | None = None
    """How many hand-offs its queue holds before producers block (a bulk chunk counts once)."""
    latency_p95: float | None = None
    last_error: str | None = None
    """The last task failure, ``Type: message`` on one line (None: none since it started)."""
    last_error_at: float | None = None
    """When that failure happened (``time.time()``)."""
    kind: str | None = None
    """The worker model (``ThreadPool``, ``PeriodicTimer``, ...); the host fills it in."""
    # A durable intake's (``intake/component.py``; None for the other models):
    depth: int | None = None
    """Jobs ready in its store: every node's backlog (``queue_depth`` is what this process holds)."""
    wait_p50: float | None = None
    """Median seconds a job waited from its submit to its first start (sampled)."""
    wait_p99: float | None = None
    retries: int | None = None
    """Failed attempts put back for a retry (after a backoff)."""
    rescues: int | None = None
    """Jobs its store took back from a lease that ran out (a node that died, or a handler past the
    intake's hang timeout)."""
    dead_letters: int | None = None
    """Jobs in its store's dead-letter table."""
    commit_batch: float | None = None
    """Operations per store commit, on average (group commit: submits, acks, renewals, claims)."""

    def __init__(self, name: str, submitted: int, completed: int, failed: int, in_flight: int,
                 queue_depth: int, latency_p50: float | None = None, latency_p99: float | None = None,
                 workers: int | None = None, queue_capacity: int | None = None,
                 latency_p95: float | None = None, last_error: str | None = None,
                 last_error_at: float | None = None, kind: str | None = None, depth: int | None = None,
                 wait_p50: float | None = None, wait_p99: float | None = None, retries: int | None = None,
                 rescues: int | None = None, dead_letters: int | None = None,
                 commit_batch: float | None = None) -> None:
        # What @dataclass(frozen=True) generates, written out (``_records.py``): a new field goes
        # here too, with its default (tests/unit/test_frozen_records.py compares the two).
        self.__dict__.update(
            name=name, submitted=submitted, completed=completed, failed=failed, in_flight=in_flight,
            queue_depth=queue_depth, latency_p50=latency_p50, latency_p99=latency_p99, workers=workers,
            queue_capacity=queue_capacity, latency_p95=latency_p95, last_error=last_error,
            last_error_at=last_error_at, kind=kind, depth=depth, wait_p50=wait_p50, wait_p99=wait_p99,
            retries=retries, rescues=rescues, dead_letters=dead_letters, commit_batch=commit_batch)

    def summary(self) -> str:
        """One short line, e.g. for systemd's ``STATUS=`` (php-fpm style: done, failed, busy/size,
        queued/capacity)."""
        busy = f"{self.in_flight} running" if self.workers is None else f"{self.in_flight}/{self.workers} busy"
        queued = f"{self.queue_depth} queued" if self.queue_capacity is None else \
            f"{self.queue_depth}/{self.queue_capacity} queued"
        return f"{self.name}: {self.completed} done, {self.failed} failed, {busy}, {queued}"


#: The bucket grid every sampled time (a task's run, its wait in a queue) is counted on: upper
#: bounds in seconds, 100 µs to 15 min. A metrics exposition shows these buckets or a subset of
#: them (``ops/metrics.py``); the grid itself is fixed, so counting costs one bisect per sample.
TIME_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
)


@record(frozen=True)
class Histogram:
    """Sampled times counted on :data:`TIME_BUCKETS`: ``counts[i]`` samples were at most
    ``TIME_BUCKETS[i]`` (and above the bound before); the last count is those above 15 min.
    ``total`` is the sum of the samples, in seconds."""

    counts: tuple[int, ...] = (0,) * (len(TIME_BUCKETS) + 1)
    total: float = 0.0

    def __init__(self, counts: tuple[int, ...] = (0,) * (len(TIME_BUCKETS) + 1), total: float = 0.0) -> None:
        self.__dict__.update(counts=counts, total=total)  # written out: see Counters.__init__

    @property
    def samples(self) -> int:
        return sum(self.counts)

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(tuple(a + b for a, b in zip(self.counts, other.counts)), self.total + other.total)


@record(frozen=True)
class Measures:
    """What a component offers a metrics exposition beyond its :class:`Counters`: totals that only
    grow. Fields are only ever added, each with a default.

    ``busy_seconds``: time its workers spent running tasks, the running ones included (so a rate
    of it over the worker count is the utilisation). ``task_duration``, ``queue_wait``: sampled
    where the pools sample run times (one task in ``LATENCY_SAMPLE_EVERY``, one hand-off in as many
    for the wait). ``rejected``: tasks refused by ``submit``/``put`` (queue closed, or full past
    the caller's timeout). ``restarts``: workers replaced (a process pool's child that died or
    reached ``max_tasks_per_child``). ``stages``: a pipeline's, per stage name."""

    busy_seconds: float = 0.0
    task_duration: Histogram = Histogram()
    queue_wait: Histogram | None = None
    rejected: int = 0
    restarts: int = 0
    stages: Mapping[str, Measures] = field(default_factory=dict)

    def __init__(self, busy_seconds: float = 0.0, task_duration: Histogram = Histogram(),
                 queue_wait: Histogram | None = None, rejected: int = 0, restarts: int = 0,
                 stages: Mapping[str, Measures] | None = None) -> None:
        # written out: see Counters.__init__ (``stages`` left out: a new dict, as default_factory)
        self.__dict__.update(busy_seconds=busy_seconds, task_duration=task_duration, queue_wait=queue_wait,
                             rejected=rejected, restarts=restarts, stages={} if stages is None else stages)


@runtime_checkable
class Measured(Protocol):
    """A component that reports :class:`Measures` (every built-in worker model does); the metrics
    of one that does not show its :class:`Counters` only."""

    def measures(self) -> Measures: ...


class Beat(NamedTuple):
    """One worker's heartbeat: busy since when (``None``: idle, which is always healthy)."""

    component: str
    worker: str
    busy_since: float | None
    current: str = ""

    def hung(self, now: float, hang_timeout: float) -> bool:
        return self.busy_since is not None and now - self.busy_since > hang_timeout


class Unfinished(NamedTuple):
    """What a component still held when its drain ended at the deadline.

    ``queued`` tasks never started. ``to_waiters`` of them had a waiter (``submit_result``,
    ``map``), which was told (QueueClosed); the others were handed back (``handed_back``) to the
    component's ``on_unfinished`` hook when it has one, so a durable source can take them back.
    ``running`` tasks were still executing on threads Python cannot kill (or in processes that
    were then terminated). ``queued_by_stage``: the never-started items per stage, for a
    component with stages (a Pipeline). See ``workers/_tasks.py`` for the rule every model keeps.
    """

    component: str
    kind: str
    queued: int
    running: int
    handed_back: bool = False
    running_what: Sequence[str] = ()
    to_waiters: int = 0
    queued_by_stage: Mapping[str, int] = MappingProxyType({})

    @property
    def total(self) -> int:
        return self.queued + self.running

    @staticmethod
    def merge(first: Unfinished | None, later: Unfinished | None) -> Unfinished | None:
        """Two drains of one component (a forced stop overtaking the graceful one): the tasks both
        took back, and what still ran at the later one."""
        if first is None or later is None:
            return later if first is None else first
        before, after = first.queued_by_stage, later.queued_by_stage
        return later._replace(
            queued=first.queued + later.queued,
            to_waiters=first.to_waiters + later.to_waiters,
            handed_back=first.handed_back or later.handed_back,
            queued_by_stage={k: before.get(k, 0) + after.get(k, 0) for k in {*before, *after}},
        )


HandBack = Callable[[list[Any]], object]
"""``on_unfinished(items)``: receives the work a component could not finish, to re-queue it."""


@runtime_checkable
class Component(Protocol):
    """A worker model a service composes; the host drives it (``Service.use``).

    Order on stop: ``close()`` (stop intake) → ``drain(deadline)`` (finish in-flight work) →
    report what is left. All calls come from the host thread except ``beats``/``counters``.
    A component may also hold its intake for a host drain (:class:`HoldsIntake`); one that
    cannot is left as it is while the host drains.
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


@runtime_checkable
class HoldsIntake(Protocol):
    """What a component offers for a host drain (``lifecycle.py``: DRAINING): hold its intake
    without closing it — producers block as on a full queue, timers skip their ticks — while its
    workers finish everything accepted; then release it. Neither call blocks."""

    def hold_intake(self) -> None: ...

    def release_intake(self) -> None: ...
