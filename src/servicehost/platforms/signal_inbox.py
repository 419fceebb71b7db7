"""Signals read from a socket, by any thread: the one way servicehost receives stop and reload
signals (the foreground, systemd and supervisord platforms, and supervisord's restart wait).

Why not a Python handler that queues the signal: CPython runs a Python signal handler only on the
main thread, and only once that thread is back in the interpreter. A main thread blocked in a lock
(``Event.wait``, ``queue.get``: where a service host's main thread spends its life) wakes for a
signal only when the kernel interrupts that very wait. A signal that lands on another thread, or on
the main thread in the instant between its last look and its blocking call, interrupts nothing:
the handler then waits for the next wake-up, which may never come (a SIGTERM that systemd sent
was seen 10 s later, when a second one came). So the handlers installed here do nothing in
Python; CPython's C-level handler writes each signal's number to a socket
(``signal.set_wakeup_fd``) at once, on whatever thread it lands, and :meth:`SignalInbox.get` reads
those numbers with ``select``, from any thread, with a timeout.

Only the main thread may open an inbox (Python's rule for handlers and the wake-up fd). The
previous handlers and wake-up fd are restored on close.
"""

from __future__ import annotations

import select
import signal
import socket
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any, Union

_Handler = Union[Callable[[int, FrameType | None], Any], int, signal.Handlers, None]

#: Written by :meth:`SignalInbox.close`; no signal has the number 0.
_CLOSED = 0


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the signal was already written to the inbox by C."""


class SignalInbox:
    """Catch ``signals`` until :meth:`close`; :meth:`get` returns each delivery, in order."""

    def __init__(self, signals: Iterable[int]) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._ready: deque[int] = deque()
        self._closed = False
        self._previous_fd: int | None = None
        self._previous_handlers: dict[int, _Handler] | None = {}
        try:
            # Raises ValueError off the main thread, before anything is changed.
            self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
            for signum in signals:
                self._previous_handlers[signum] = signal.signal(signum, _ignore)
        except BaseException:
            self._restore()
            self._reader.close()
            self._writer.close()
            raise

    def get(self, timeout: float | None = None) -> int | None:
        """The next signal's number; None after ``timeout`` seconds (None: no limit) or once the
        inbox is closed. One thread at a time."""
        while not self._ready:
            if self._closed:
                return None
            readable, _, _ = select.select([self._reader], [], [], timeout)
            if not readable:
                return None
            try:
                data = self._reader.recv(512)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return None  # closed under us
            for signum in data:
                if signum == _CLOSED:
                    self._closed = True
                else:
                    self._ready.append(signum)
        return self._ready.popleft()

    def close(self) -> None:
        """Restore the previous handlers and wake-up fd; wake a thread blocked in :meth:`get`
        (it returns None once what came before is read). Main thread; idempotent. The sockets
        stay open until :meth:`release`, so the reader never reads a closed descriptor."""
        if self._previous_handlers is None:
            return
        self._restore()
        try:
            self._writer.send(bytes([_CLOSED]))
        except OSError:
            pass  # full of signals: the reader is not waiting

    def release(self) -> None:
        """Close the sockets, once no thread reads them any more."""
        self.close()
        self._reader.close()
        self._writer.close()

    def _restore(self) -> None:
        handlers, self._previous_handlers = self._previous_handlers, None
        for signum, handler in (handlers or {}).items():
            signal.signal(signum, handler)
        previous, self._previous_fd = self._previous_fd, None
        if previous is not None:
            signal.set_wakeup_fd(previous)

    def __enter__(self) -> SignalInbox:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
