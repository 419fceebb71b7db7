"""Foreground: a terminal, or any manager that only sends signals.

SIGTERM / SIGINT (Ctrl-C) / SIGBREAK → graceful stop; a second one forces it; SIGHUP → reload;
SIGUSR2 → every thread's stack on stderr, written by ``faulthandler`` from C, so it comes even
while a C extension holds the GIL (``servicehost threads NAME`` asks the same of a live service).
The same stop signal again within :data:`REPEAT_WINDOW` (0.5 s) is the same request, not a second
one: Ctrl-C in a terminal signals the whole process group, so a service started by a wrapper
(a shell script, ``make``) that passes the signal on receives two at once.
Signals are read from a socket (``signal_inbox``: CPython writes each one there from C, on
whatever thread it lands, so a main thread blocked in a wait never delays one) by a small
platform thread that acts on them, so no hook ever runs inside a signal handler. Previous handlers
are restored on exit.
``wait_for_stop`` is reused by the platforms that are "foreground plus notifications".
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from .. import logs
from ..errors import ExitCode, PlatformUnavailable
from ..host import Host
from .entry import PlatformEntry
from .once_ready import channel_once_ready
from .signal_inbox import SignalInbox

if TYPE_CHECKING:
    from .base import Manager

ENTRY = PlatformEntry(name="foreground", platform="servicehost.platforms.foreground:ForegroundPlatform")

log = logging.getLogger("servicehost.platforms")

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGBREAK") if hasattr(signal, name))
RELOAD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGHUP",) if hasattr(signal, name))
DUMP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR2",) if hasattr(signal, name))
#: Seconds within which the same stop signal again counts as the same request (module docstring).
REPEAT_WINDOW = 0.5
#: Seconds the block's exit waits for the signal thread to finish what it is doing.
_ACT_GRACE = 1.0


@contextmanager
def signals_to_host(host: Host) -> Iterator[None]:
    """Route stop and reload signals to ``host`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install handlers; the caller handles stops itself
        return
    inbox = SignalInbox(STOP_SIGNALS + RELOAD_SIGNALS)

    def act() -> None:
        last_stop = (0, -REPEAT_WINDOW - 1.0)  # (signal, when) of the last stop request
        while (signum := inbox.get()) is not None:
            when = time.monotonic()
            if signum in STOP_SIGNALS:
                if signum == last_stop[0] and when - last_stop[1] <= REPEAT_WINDOW:
                    logs.signal_repeated(log, signal.Signals(signum).name, REPEAT_WINDOW)
                    continue
                last_stop = (signum, when)
            logs.signal_received(log, signal.Signals(signum).name)
            if signum in STOP_SIGNALS:
                host.request_stop(signal.Signals(signum).name)
            else:
                try:
                    host.reload()
                except Exception as exc:  # the hook already logged it; keep serving
                    logs.reload_failed(log, exc)

    worker = threading.Thread(target=act, name="servicehost-signals", daemon=True)
    worker.start()
    try:
        with thread_dump_on_signal():
            yield
    finally:
        inbox.close()
        worker.join(_ACT_GRACE)
        if not worker.is_alive():
            inbox.release()  # else a reload hook still runs: the daemon thread keeps its socket


@contextmanager
def thread_dump_on_signal() -> Iterator[None]:
    """While the block runs, SIGUSR2 writes every thread's stack to stderr (``faulthandler``: from
    C, in the signal handler itself, so a thread holding the GIL in a C extension cannot stop it).
    Where there is no SIGUSR2 (Windows) or no stderr with a file descriptor, nothing happens."""
    import faulthandler

    stream = next((s for s in (sys.stderr, sys.__stderr__) if _has_fileno(s)), None)
    if not DUMP_SIGNALS or stream is None:
        yield
        return
    for signum in DUMP_SIGNALS:
        faulthandler.register(signum, file=stream, all_threads=True, chain=False)
        logs.thread_dump_signal(log, signal.Signals(signum).name, "stderr")
    try:
        yield
    finally:
        for signum in DUMP_SIGNALS:
            faulthandler.unregister(signum)


def _has_fileno(stream: object) -> bool:
    try:
        return stream is not None and stream.fileno() >= 0  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


class ForegroundPlatform:
    """Run in the terminal (or under a manager that only sends signals)."""

    name = "foreground"

    def detect(self, env: Mapping[str, str]) -> str | None:
        return "no service manager detected"

    def holds_services(self, env: Mapping[str, str]) -> bool:
        return False  # a terminal installs nothing

    def installable(self, env: Mapping[str, str]) -> str | None:
        return None  # nothing to install into: a terminal is not a service manager

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Run ``host`` until it stops. On Linux it also serves its control channel by its name,
        so ``servicehost status NAME`` finds a run that no manager has (``control.serving``)."""
        with ExitStack() as stack:
            if sys.platform.startswith("linux"):  # the channel needs AF_UNIX and SO_PEERCRED
                stack.enter_context(channel_once_ready(host))
            stack.enter_context(signals_to_host(host))
            return host.run()

    def manager(self) -> Manager:
        raise PlatformUnavailable("the foreground has no service manager to install into; choose one with --manager")
