"""A service's ``sys.stdout``/``sys.stderr``: a service has no console, so what its code prints
becomes log records (events 5312/5313) instead of blocking or raising.

Installed by ``boot.service_main`` before anything else runs; ``session.prepare_process`` turns
logging on once the host runs; :func:`restore_console` gives the real streams back when the
ImagePath was run by hand from a console after all.
"""

from __future__ import annotations

import io
import logging
import sys
import threading

from ... import logs


class ServiceStdio(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a service: never ``None``, never blocks, never raises.

    A service has no console (the streams are ``None``) or a pipe nobody reads (a print blocks once
    its small buffer fills). Until the host runs, text is kept (the last 64 KiB) so a failed start
    can say why; then each line becomes a log record (event 5312/5313), which the Event Log and the
    log file receive. A record that fails while being written is dropped, not re-entered.
    """

    KEEP = 64 * 1024

    def __init__(self, event: logs.LogEvent) -> None:
        super().__init__()
        self._event = event
        self._pending = ""
        self._kept = ""
        self._logging = False
        self._lock = threading.Lock()
        self._busy = threading.local()
        self._log = logging.getLogger("servicehost.stdio")

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        text = str(text)
        with self._lock:
            if not self._logging:
                self._kept = (self._kept + text)[-self.KEEP:]
                return len(text)
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if getattr(self._busy, "on", False) or not line.strip():
            return
        self._busy.on = True
        try:
            self._event(self._log, line.rstrip("\r"))
        finally:
            self._busy.on = False

    def start_logging(self, replay: bool = True) -> None:
        """From now on each line is a log record; what was kept is logged first (``replay``)."""
        with self._lock:
            kept, self._kept, self._logging = self._kept, "", True
        if replay:
            self.write(kept)

    def kept(self) -> str:
        with self._lock:
            return self._kept


def restore_console() -> None:
    """Run by hand from a console after all: give back the real stdout/stderr (what was written
    meanwhile included), and point console log handlers at them again."""
    for name, original in (("stdout", sys.__stdout__), ("stderr", sys.__stderr__)):
        current = getattr(sys, name)
        if not isinstance(current, ServiceStdio) or original is None:
            continue
        setattr(sys, name, original)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is current:
                handler.setStream(original)
        original.write(current.kept())


__all__ = ["ServiceStdio", "restore_console"]
