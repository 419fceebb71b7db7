"""Helpers for testing code built on servicehost. Nothing here is used by the framework itself.

:class:`FakeClock` is a monotonic clock that only moves when a test calls ``advance``; pass it
as both the clock and the wait of a timer to make timing tests exact and independent of load::

    clock = FakeClock()
    timer = PeriodicTimer(1.0, fn, clock=clock, wait=clock.wait)
    clock.wait_for_sleepers()  # the timer is asleep until its first tick
    clock.advance(1.0)         # ... and now it runs it
"""

from __future__ import annotations

import itertools
import threading

#: Targets this close to the fake time count as reached (``now + (due - now)`` may round).
_ROUNDING = 1e-9


class FakeClock:
    """A fake monotonic clock: ``clock()`` returns the fake time; ``advance`` moves it and
    wakes the threads sleeping in ``wait`` whose time has come. Thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._changed = threading.Condition()
        self._sleepers: dict[int, float] = {}  # sleeper id -> fake time it wakes at
        self._woken: set[int] = set()  # sleepers ended early by wake()
        self._ids = itertools.count()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the time forward and release every sleeper whose wake-up time is reached."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds})")
        with self._changed:
            self._now += seconds
            for sleeper, at in list(self._sleepers.items()):
                if at <= self._now + _ROUNDING:
                    del self._sleepers[sleeper]
            self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until the fake time has moved ``timeout`` seconds on (None: until ``wake``).

        Returns True when ``wake()`` ended the sleep early, False when the time was reached:
        the same meaning as ``threading.Event.wait``, with ``wake`` as the event.
        """
        with self._changed:
            if timeout is not None and timeout <= 0:
                return False
            me = next(self._ids)
            self._sleepers[me] = float("inf") if timeout is None else self._now + timeout
            self._changed.notify_all()  # for wait_for_sleepers
            while me in self._sleepers:
                self._changed.wait()
            if me in self._woken:
                self._woken.remove(me)
                return True
            return False

    def wake(self) -> None:
        """End every sleep now (a timer's ``close`` calls this)."""
        with self._changed:
            self._woken.update(self._sleepers)
            self._sleepers.clear()
            self._changed.notify_all()

    @property
    def sleepers(self) -> int:
        """How many threads are sleeping in ``wait`` right now."""
        return len(self._sleepers)

    def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until at least ``count`` threads sleep in ``wait`` (e.g. a timer finished its run
        and sleeps until the next tick). ``timeout`` (real seconds) only guards against a hang:
        TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._sleepers) >= count, timeout):
                raise TimeoutError(f"{len(self._sleepers)} sleeper(s) after {timeout}s, wanted {count}")
