"""The foreground's signals (platforms/foreground.py), raised in this process for real: a stop
signal repeated within REPEAT_WINDOW is the same request (a process group's Ctrl-C reaches a
wrapper and the service both), a later one is a second request (which forces the stop)."""

from __future__ import annotations

import logging
import signal
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
