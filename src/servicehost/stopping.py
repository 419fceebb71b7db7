"""StopToken and Deadline: the only cancellation primitive in servicehost.

A stop *request* starts the graceful phase and fixes one :class:`Deadline`
(``now + shutdown_timeout``). Every blocking ``join``/``get``/``wait`` in the framework takes its
timeout from that deadline, so no wait can outlive it. When the deadline passes (or a second
signal forces the stop) the host stops being graceful: it reports what did not finish and exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class Deadline:
    """A point in time on a monotonic clock; ``Deadline(None)`` never expires.

    >>> d = Deadline.after(2.0)
    >>> 0 < d.remaining() <= 2.0
    True
    """

    __slots__ = ("_at", "_clock")

    def __init__(self, at: float | None, clock: Clock = time.monotonic) -> None:
        self._at = at
        self._clock = clock

    @classmethod
    def after(cls, seconds: float | None, clock: Clock = time.monotonic) -> Deadline:
        """A deadline ``seconds`` from now (``None``: never)."""
        return cls(None if seconds is None else clock() + seconds, clock)

    @classmethod
    def never(cls) -> Deadline:
        return cls(None)

    @property
    def at(self) -> float | None:
        return self._at

    def remaining(self, cap: float | None = None) -> float | None:
        """Seconds left (never negative), at most ``cap``; ``None`` means wait forever."""
        if self._at is None:
            return cap
        left = max(0.0, self._at - self._clock())
        return left if cap is None else min(left, cap)

    @property
    def expired(self) -> bool:
        return self._at is not None and self._clock() >= self._at

    def earliest(self, other: Deadline) -> Deadline:
        """The sooner of two deadlines (same clock assumed)."""
        if other._at is None:
            return self
        if self._at is None or other._at < self._at:
            return other
        return self

    def __repr__(self) -> str:
        left = self.remaining()
        return "Deadline(never)" if left is None else f"Deadline(in {left:.3f}s)"


class StopToken:
    """Tells code that the host wants it to stop, and by when.

    Pass it into every blocking entry point; the idiom is ``while not stop.wait(interval): ...``.
    ``on_stop`` callbacks wake code that is blocked somewhere else (``stop.on_stop(queue.close)``).
    Thread-safe. Only the owner (the :class:`~servicehost.host.Host`, or a test) calls
    :meth:`request_stop` and :meth:`force`.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._event = threading.Event()
        self._forced = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self._clock = clock
        self._deadline = Deadline.never()
        self.reason: str = ""

    # -- asking ---------------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self._event.is_set()

    @property
    def forced(self) -> bool:
        """True once the stop is no longer graceful (deadline passed or a second request)."""
        return self._forced.is_set() or self._deadline.expired

    @property
    def deadline(self) -> Deadline:
        """The graceful-stop deadline; ``Deadline.never()`` until a stop is requested."""
        return self._deadline

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds; True as soon as a stop is requested."""
        return self._event.wait(timeout)

    def wait_forced(self, timeout: float | None = None) -> bool:
        """Block until the stop is forced (second request) or ``timeout``; True if forced."""
        return self._forced.wait(timeout)

    def on_stop(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run ``callback`` (once, on the requesting thread) when a stop is requested.

        Runs at once if the stop was already requested. Returns a function that unregisters it.
        """
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)

                def unregister() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return unregister
        callback()
        return lambda: None

    # -- owning ---------------------------------------------------------------------------------
    def request_stop(self, timeout: float | None = None, reason: str = "") -> bool:
        """Start the graceful phase with a deadline ``timeout`` seconds from now.

        Returns True on the first request. A later request does not move the deadline.
        """
        with self._lock:
            if self._event.is_set():
                return False
            self._deadline = Deadline.after(timeout, self._clock)
            self.reason = reason
            callbacks, self._callbacks = self._callbacks, []
            self._event.set()
        for callback in callbacks:
            callback()
        return True

    def force(self) -> None:
        """End the graceful phase now (a second Ctrl-C, or the deadline's watchdog)."""
        self.request_stop(0.0, "forced")
        self._forced.set()
