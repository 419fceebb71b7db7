"""Changing a logger's level in a running service (the control channel's ``loglevel``).

``LEVELS.set("myapp.db", "DEBUG", for_seconds=600)`` turns the logger to DEBUG and, after ten
minutes, back to the level it had before, by itself (a daemon timer). A second change of the same
logger replaces the first (and its timer); the level it goes back to stays the one it had before
the first. Without ``for_seconds`` the change lasts until the next one (or the process ends).
The handlers servicehost installed let the lower level through (``logs.set_logger_level``).
Every change and every revert is logged (events 5225, 5226): an operator reading the log sees why
it suddenly holds DEBUG lines, and until when.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any, NamedTuple

from .. import logs

log = logging.getLogger("servicehost.ops")

#: The level names ``loglevel`` takes (any case); NOTSET: the logger inherits its parent's again.
LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NOTSET")
#: The longest ``--for`` (seconds): a week.
MAX_FOR = 7 * 86400.0
_LOGGER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}")


class _Change(NamedTuple):
    before: int
    timer: threading.Timer | None
    until: float | None


class LevelChanges:
    """The loggers whose level was changed, each with the level it had and its revert timer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: dict[str, _Change] = {}

    def set(self, logger: str, level: str, for_seconds: float | None = None) -> dict[str, Any]:
        """Set ``logger`` (``root`` or ``""``: the root logger) to ``level``; for ``for_seconds``,
        then back by itself. ValueError for a bad name, level or duration. The answer: logger,
        level, was (its level before this change), existed (whether code had asked for that
        logger before: a typo makes one nobody logs to), reverts_to, reverts_at (Unix time) and
        reverts_in (seconds), None when the change stays."""
        name = _logger_name(logger)
        number = _level(level)
        if for_seconds is not None and (isinstance(for_seconds, bool) or not isinstance(for_seconds, (int, float))
                                        or not math.isfinite(for_seconds) or not 0 < for_seconds <= MAX_FOR):
            raise ValueError(f"loglevel: --for must be more than 0 and at most {MAX_FOR:g} seconds, "
                             f"got {for_seconds!r}")
        existed = not name or name in logging.Logger.manager.loggerDict
        shown = name or "root"
        with self._lock:
            old = self._changes.pop(name, None)
            if old is not None and old.timer is not None:
                old.timer.cancel()
            was = logging.getLogger(name or None).level
            before = logs.set_logger_level(name, number)
            if old is not None:
                before = old.before  # a change of a change goes back to where the first began
            timer, until = None, None
            if for_seconds is not None:
                until = time.time() + for_seconds
                timer = threading.Timer(for_seconds, self._revert, args=(name, for_seconds))
                timer.name = f"servicehost-loglevel-{shown}"
                timer.daemon = True
            self._changes[name] = _Change(before, timer, until)
            if timer is not None:
                timer.start()
        when = (f"until {time.strftime('%H:%M:%S', time.localtime(until))} (for {for_seconds:g}s), then back to "
                f"{logging.getLevelName(before)} by itself" if until is not None else "until changed again")
        logs.control_level_set(log, shown, logging.getLevelName(number), logging.getLevelName(was), when)
        return {"logger": shown, "level": logging.getLevelName(number), "was": logging.getLevelName(was),
                "existed": existed, "reverts_to": logging.getLevelName(before) if until is not None else None,
                "reverts_at": until, "reverts_in": for_seconds}

    def _revert(self, name: str, for_seconds: float) -> None:
        with self._lock:
            change = self._changes.get(name)
            if change is None or change.timer is not threading.current_thread():
                return  # replaced by a newer change meanwhile: that one decides
            del self._changes[name]
            logs.restore_logger_level(name, change.before)
        logs.control_level_reverted(log, name or "root", logging.getLevelName(change.before),
                                    f"its {for_seconds:g}s ran out")

    def pending(self) -> dict[str, float | None]:
        """Logger → when its change reverts (Unix time; None: it stays)."""
        with self._lock:
            return {name or "root": change.until for name, change in self._changes.items()}


def _logger_name(text: Any) -> str:
    if not isinstance(text, str) or not (text in ("", "root") or _LOGGER.fullmatch(text)):
        raise ValueError(f"loglevel: {text!r} is not a logger name (letters, digits, _ . : -; root: the root logger)")
    return "" if text == "root" else text


def _level(text: Any) -> int:
    name = text.upper() if isinstance(text, str) else None
    if name not in LEVEL_NAMES:
        raise ValueError(f"loglevel: level must be one of {', '.join(LEVEL_NAMES)}, got {text!r}")
    return int(getattr(logging, name))


#: The one table of this process's changes (one host per process).
LEVELS = LevelChanges()
