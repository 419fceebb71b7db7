"""The foreground's signals (platforms/foreground.py), raised in this process for real: a stop
signal repeated within REPEAT_WINDOW is the same request (a process group's Ctrl-C reaches a
wrapper and the service both), a later one is a second request (which forces the stop)."""

from __future__ import annotations

import logging
import signal
import threading
import time

from servicehost.platforms.base import wait_until
from servicehost.platforms.foreground import REPEAT_WINDOW, signals_to_host
from servicehost.stopping import Deadline

HANG_GUARD = 30.0  # seconds: only against hangs


class RecordingHost:
    """What signals_to_host calls, recorded."""

    def __init__(self) -> None:
        self.stops: list[str] = []
        self.reloads = 0

    def request_stop(self, reason: str = "requested") -> None:
        self.stops.append(reason)

    def reload(self) -> None:
        self.reloads += 1


class Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.names.append(getattr(record, "event", ""))


def _until(predicate, what: str) -> None:
    wait_until(predicate, Deadline.after(HANG_GUARD), lambda: AssertionError(f"hang guard: {what}"))


def test_the_same_stop_signal_within_the_window_is_one_request_and_a_later_one_is_a_second():
    host, events = RecordingHost(), Events()
    logger = logging.getLogger("servicehost.platforms")
    logger.addHandler(events)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with signals_to_host(host):  # type: ignore[arg-type]
            signal.raise_signal(signal.SIGINT)  # delivered at once: its handler runs before the next line
            signal.raise_signal(signal.SIGINT)
            _until(lambda: host.stops and "signal_repeated" in events.names, "the repeat to be seen")
            assert host.stops == ["SIGINT"]
            time.sleep(REPEAT_WINDOW * 1.2)  # past the window: a second request, which forces the stop
            signal.raise_signal(signal.SIGINT)
            _until(lambda: len(host.stops) == 2, "the second request")
            signal.raise_signal(signal.SIGTERM)  # another signal is never the same request
            _until(lambda: len(host.stops) == 3, "the SIGTERM")
            signal.raise_signal(signal.SIGHUP)
            signal.raise_signal(signal.SIGHUP)  # reloads are never merged
            _until(lambda: host.reloads == 2, "both reloads")
    finally:
        logger.removeHandler(events)
        logger.setLevel(level)
    assert host.stops == ["SIGINT", "SIGINT", "SIGTERM"]
    assert events.names.count("signal_repeated") == 1


def _signal_from_another_thread(signum: int, after: float = 0.1) -> threading.Timer:
    """A thread that sends ``signum`` to itself ``after`` seconds from now: the kernel delivers it
    there, not to the main thread, so a wait the main thread is blocked in is not interrupted (as
    when a process-directed signal lands on a worker thread, or on the main thread in the instant
    before it blocks)."""
    sender = threading.Timer(after, lambda: signal.pthread_kill(threading.get_ident(), signum))
    sender.start()
    return sender


def test_a_stop_signal_reaches_the_host_while_the_main_thread_is_blocked_in_a_wait():
    """The main thread stays blocked on a lock until the host has the request; with a handler
    that needs the main thread to run Python (a queue put), it would wait there until the end."""
    host = RecordingHost()
    stopped = threading.Event()
    host.request_stop = lambda reason="requested": (host.stops.append(reason), stopped.set())  # type: ignore[method-assign]
    reloaded = threading.Event()
    host.reload = lambda: reloaded.set()  # type: ignore[method-assign]
    with signals_to_host(host):  # type: ignore[arg-type]
        sender = _signal_from_another_thread(signal.SIGHUP)
        assert reloaded.wait(HANG_GUARD), "a SIGHUP delivered to another thread did not reload"
        sender.join()
        sender = _signal_from_another_thread(signal.SIGTERM)
        assert stopped.wait(HANG_GUARD), "a SIGTERM delivered to another thread did not stop the host"
        sender.join()
    assert host.stops == ["SIGTERM"]


def test_the_previous_handlers_and_wakeup_fd_are_restored():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with signals_to_host(RecordingHost()):  # type: ignore[arg-type]
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.set_wakeup_fd(-1) == -1  # none was set before, none is left behind
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_restart_wait_ends_at_a_stop_signal_that_lands_on_another_thread():
    """supervisord's restart wait (``wait_out``) blocks the main thread for up to the delay."""
    from servicehost.platforms.supervisord.backoff import wait_out

    sender = _signal_from_another_thread(signal.SIGTERM)
    assert wait_out(HANG_GUARD) == "SIGTERM"  # not None: the wait did not run out first
    sender.join()


def test_the_restart_wait_ignores_a_reload_and_runs_out_without_a_stop():
    from servicehost.platforms.supervisord.backoff import wait_out

    sender = _signal_from_another_thread(signal.SIGHUP, after=0.05)
    assert wait_out(0.3) is None
    sender.join()
