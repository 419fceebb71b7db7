"""The component contract the core owns: what a worker model must offer the host (the
:class:`Component` protocol), and the records it reports — live :class:`Counters`, heartbeats
(:class:`Beat`) and, at a stop, what was left (:class:`Unfinished`). Worker models in
``workers/`` implement it; the host and the platforms read it. It imports nothing from ``workers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

from .stopping import Deadline


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

    def summary(self) -> str:
        """One short line, e.g. for systemd's ``STATUS=``."""
        return (
            f"{self.name}: {self.completed} done, {self.failed} failed, "
            f"{self.in_flight} running, {self.queue_depth} queued"
        )


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
