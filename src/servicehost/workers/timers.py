"""PeriodicTimer: run a function at a fixed rate, without drift and without overlap.

The n-th tick is due at ``origin + n * interval`` (``origin`` = construction time +
``first_delay``), computed from the tick number, never by sleeping ``interval`` after a run: a
run's duration or a late wake-up does not shift the ticks after it.

Runs never overlap. A tick that comes due while the previous run is still busy is skipped,
counted and logged (``tick_skipped``); the next run happens on the next tick of the grid:

* ``run_on=None``: ``fn`` runs on the timer's own thread. A run that overran its period
  skips every tick that came due while it ran.
* ``run_on=pool`` (a :class:`~servicehost.workers.thread_pool.ThreadPool`): each tick submits
  the run to the pool; a tick is skipped while the run submitted before it has not finished, or
  when the pool's queue is full (``ticks_missed``; the timer never blocks on the pool).

If the timer itself wakes up after several ticks came due (a clock jump, a suspended machine)
it runs once and counts the others as skipped (``ticks_missed``).

Ticks that come due while paused (or while the host drains: ``hold_intake``) are not run: they
are counted in ``paused``, neither run nor skipped, and the grid is unchanged, so after ``resume``
(``release_intake``) the next run is on the next tick.

Time comes from ``clock`` and waiting from ``wait``, so tests drive the timer with a
:class:`~servicehost.testing.FakeClock`: ``PeriodicTimer(1.0, fn, clock=fake, wait=fake.wait)``.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..errors import QueueClosed, QueueFull
from ..stopping import Clock, Deadline
from ..components import Beat, Counters, Unfinished
from ._supervision import Drains, WorkerStats, describe, sum_counters
from .thread_pool import ThreadPool

log = logging.getLogger("servicehost.workers")


@dataclass(frozen=True)
class TimerCounters(Counters):
    """A timer's counters: ``submitted`` = runs started (or handed to the pool),
    ``completed``/``failed`` = runs that returned/raised, ``in_flight`` = 0 or 1."""

    skipped: int = 0
    """Ticks not run because the previous run was busy (or the timer woke late, or the pool was full)."""
    paused: int = 0
    """Ticks that came due while paused or held by a drain (not run)."""
    last_result: str | None = None
    """How the last run ended: ``ok`` or ``failed`` (None: no run yet)."""
    last_run: float | None = None
    """When the last run began (``time.time()``)."""
    next_run: float | None = None
    """When the next tick is due (``time.time()``; None once closed)."""
    interval: float | None = None
    last_success: float | None = None
    """When the last run that returned began (``time.time()``; None: none yet)."""

    def summary(self) -> str:
        last = f", last {self.last_result}" if self.last_result else ""
        return (
            f"{self.name}: {self.completed} runs, {self.failed} failed, {self.skipped} skipped, "
            f"{self.in_flight} running{last}"
        )


class PeriodicTimer(Drains):
    """Calls ``fn()`` every ``interval`` seconds; a :class:`~servicehost.workers.Component`.

    The timer's thread starts in the constructor. ``clock`` is a monotonic clock.
    ``wait(timeout) -> bool`` is how that thread sleeps until the next tick: it may return
    early (True: woken), after which the timer checks whether it was closed and how late it is.
    The default is an internal Event's ``wait``, which ``close()`` sets; a custom ``wait``
    cannot see that Event, so ``close()`` also calls ``clock.wake()`` when the clock has one
    (FakeClock has). ``first_delay``: seconds until the first tick (default ``interval``).
    """

    def __init__(
        self,
        interval: float,
        fn: Callable[[], Any],
        *,
        name: str = "timer",
        clock: Clock = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        first_delay: float | None = None,
        run_on: ThreadPool | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"{name}: interval must be > 0, got {interval}")
        if first_delay is not None and first_delay < 0:
            raise ValueError(f"{name}: first_delay must be >= 0, got {first_delay}")
        self.name = name
        self.interval = interval
        self.fn = fn
        self.run_on = run_on
        self._clock = clock
        self._wake = threading.Event()
        self._wait = wait or self._wake.wait
        self._closed = False
        self._paused = False
        self._held = False  # a host drain: ticks are not run, as while paused
        self._last_result: str | None = None
        self._last_run: float | None = None  # time.time() the last run began
        self._last_success: float | None = None  # time.time() the last run that returned began
        self._stats = WorkerStats(name)
        self._stats.current = fn
        self._submitted = 0  # written by the timer's thread only, like the two below
        self._skipped = 0
        self._paused_ticks = 0
        self._idle = threading.Event()  # no run in progress (or queued in the pool)
        self._idle.set()
        # Submitted to the pool under fn's own name, so the pool's reports name the real task.
        self._pool_run = functools.wraps(fn)(lambda: self._run())
        self._origin = clock() + (interval if first_delay is None else first_delay)
        self._next_due: float | None = self._origin  # the clock's time of the next tick (None: closed)
        self._thread = threading.Thread(target=self._schedule, name=name, daemon=True)
        self._thread.start()

    def _due(self, tick: int) -> float:
        return self._origin + tick * self.interval

    # -- the timer's thread -------------------------------------------------------------------------
    def _schedule(self) -> None:
        tick = 0
        try:
            while self._sleep_until(self._due(tick)):
                behind = math.floor((self._clock() - self._due(tick)) / self.interval)
                if behind > 0:  # woke after later ticks came due: run once, for the latest
                    tick += behind
                    self._skip(behind, "the timer woke late (clock jump, suspend or overload)")
                if self._paused or self._held:
                    self._paused_ticks += 1
                elif self.run_on is not None:
                    if not self._submit():
                        return
                else:
                    self._submitted += 1
                    self._run()
                    over = self._clock() - self._due(tick + 1)
                    if over > 0:  # the run overran: the ticks that came due meanwhile are skipped
                        missed = math.ceil(over / self.interval)
                        tick += missed
                        self._skip(missed)
                tick += 1
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, self.name, self._thread.name, exc_info=exc)
            raise

    def _sleep_until(self, due: float) -> bool:
        """Block until the clock reaches ``due``; False if the timer was closed first."""
        self._next_due = due
        while not self._closed:
            left = due - self._clock()
            if left <= 0:
                return True
            self._wait(left)
        return False

    def _skip(self, count: int, reason: str | None = None) -> None:
        """Count ticks not run; ``reason`` None: the previous run was still busy."""
        self._skipped += count
        if reason is None:
            logs.tick_skipped(log, self.name, self._skipped)
        else:
            logs.ticks_missed(log, self.name, count, reason, self._skipped)

    def _submit(self) -> bool:
        """Hand one run to the pool unless the last one is unfinished. False: the pool closed."""
        assert self.run_on is not None
        if not self._idle.is_set():
            self._skip(1)
            return True
        self._idle.clear()
        self._submitted += 1  # before the run can finish, so completed never exceeds it
        try:
            self.run_on.submit(self._pool_run, timeout=0)  # never block the grid on a full pool
        except QueueFull:
            self._submitted -= 1
            self._idle.set()
            self._skip(1, f"{self.run_on.name}'s queue is full")
        except QueueClosed:  # the pool is stopping, so is the service: no more ticks
            self._submitted -= 1
            self._idle.set()
            return False
        return True

    def _run(self) -> None:
        """One run of ``fn``, on the timer's thread or a pool thread (never two at once)."""
        stats = self._stats
        # Heartbeats and run times are real time, whatever ``clock`` is: the host compares them
        # with time.monotonic() to find hung workers.
        started = stats.busy_since = time.monotonic()
        self._last_run = time.time()
        try:
            self.fn()
        except BaseException as exc:  # a run's error never ends the timer
            stats.failed += 1
            stats.error(exc)
            self._last_result = "failed"
            logs.task_failed(log, self.name, describe(self.fn), exc_info=exc)
        else:
            stats.completed += 1
            self._last_result = "ok"
            self._last_success = self._last_run
        finally:
            stats.sample(started)
            stats.busy_since = None
            self._idle.set()

    # -- control ----------------------------------------------------------------------------------
    def pause(self) -> None:
        """Ticks that come due from now on are not run (counted in ``paused``); a run in
        progress finishes."""
        self._paused = True

    def resume(self) -> None:
        """Run again from the next tick of the original grid."""
        self._paused = False

    def hold_intake(self) -> None:
        """A host drain: ticks that come due are not run (counted in ``paused``); a run in
        progress finishes."""
        self._held = True

    def release_intake(self) -> None:
        self._held = False

    def close(self) -> None:
        """No more ticks. Wakes the timer's thread; a run in progress finishes. Never blocks."""
        self._closed = True
        self._wake.set()
        wake = getattr(self._clock, "wake", None)
        if callable(wake):
            wake()

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close, then wait until ``deadline`` for a run in progress (also one given to the
        pool) to finish. Reports it if it did not; nothing is queued, so nothing is handed back."""
        self.close()
        self._thread.join(deadline.remaining())
        if self.run_on is not None:
            self._idle.wait(deadline.remaining())
        if self._stats.busy_since is None and self._idle.is_set():
            return None
        return Unfinished(self.name, "timer run", 0, 1, False, (describe(self.fn),))

    # -- observation -------------------------------------------------------------------------------
    def counters(self) -> TimerCounters:
        due = self._next_due
        next_run = None if due is None or self._closed else time.time() + (due - self._clock())
        return TimerCounters(
            **vars(sum_counters(self.name, self._submitted, [self._stats])),
            skipped=self._skipped, paused=self._paused_ticks, last_result=self._last_result,
            last_run=self._last_run, next_run=next_run, interval=self.interval, last_success=self._last_success,
        )

    def beats(self) -> Iterator[Beat]:
        """The run on the timer's own thread. With ``run_on``, the pool's beats show the run."""
        if self.run_on is None:
            busy_since = self._stats.busy_since
            yield Beat(self.name, self._thread.name, busy_since, describe(self.fn) if busy_since else "")
