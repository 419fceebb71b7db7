"""The Event Log: a service's records go to the Application log under its own source, whose
message file (``message_file.py``) renders every servicehost event id.

:class:`EventLogHandler` writes records (running under the SCM); :func:`register_event_source` and
:func:`remove_event_source` add and remove the source at install and remove (what Event Viewer reads).
"""

from __future__ import annotations

import logging

from ... import logs
from ...errors import PlatformUnavailable
from .paths import message_file_path
from .pywin32 import import_pywin32, win32_error

log = logging.getLogger("servicehost.platforms.windows")


class EventLogHandler(logging.Handler):
    """Logging records → the Application log, under the service's own source, with the record's
    event id (``logs`` events; 0 for the service's own records). Never raises into the caller."""

    MAX_CHARS = 31000  # ReportEvent's limit for one string is 31,839 characters

    def __init__(self, source: str, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._evtlog = import_pywin32("win32evtlog")
        self._handle = self._evtlog.RegisterEventSource(None, source)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno >= logging.ERROR:
                kind = self._evtlog.EVENTLOG_ERROR_TYPE
            elif record.levelno >= logging.WARNING:
                kind = self._evtlog.EVENTLOG_WARNING_TYPE
            else:
                kind = self._evtlog.EVENTLOG_INFORMATION_TYPE
            event_id = int(getattr(record, "event_id", 0) or 0)
            text = self.format(record)[: self.MAX_CHARS]
            self._evtlog.ReportEvent(self._handle, kind, 0, event_id, None, [text], None)
        except Exception:  # logging's contract: report through handleError, never raise
            self.handleError(record)

    def close(self) -> None:
        try:
            if self._handle is not None:
                self._evtlog.DeregisterEventSource(self._handle)
                self._handle = None
        finally:
            super().close()


def message_files(name: str) -> str:
    """EventMessageFile of the service's source: the generated file (servicehost's ids), then
    pywin32's servicemanager (the PYS_* ids its own host code logs)."""
    files = [str(message_file_path(name))]
    try:
        files.append(str(import_pywin32("servicemanager").__file__))
    except PlatformUnavailable:
        pass
    return ";".join(files)


def attach_event_log(source: str) -> bool:
    """Send the root logger's records to the Event Log under ``source`` too. Where the Event Log
    cannot be opened the log file still has everything: say so (5315) and go on."""
    try:
        handler = EventLogHandler(source)
    except Exception as exc:  # no Event Log service, or no right to open the source
        logs.windows_event_log_unavailable(log, source, exc)
        return False
    logs.add_handler(handler)  # ours: a later configure() replaces it, a user's handlers stay
    return True


def register_event_source(name: str) -> None:
    """Write the message file and register ``name`` as an Application log source that uses it."""
    from .message_file import event_ids, message_table, resource_dll  # install only: not on the start path

    path = message_file_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(resource_dll(message_table(event_ids())))
    evtlogutil = import_pywin32("win32evtlogutil")
    evtlog = import_pywin32("win32evtlog")
    evtlogutil.AddSourceToRegistry(
        name, message_files(name), "Application",
        evtlog.EVENTLOG_ERROR_TYPE | evtlog.EVENTLOG_WARNING_TYPE | evtlog.EVENTLOG_INFORMATION_TYPE)


def remove_event_source(name: str) -> None:
    """Unregister the source (the message file goes with the service's data folder)."""
    try:
        import_pywin32("win32evtlogutil").RemoveSourceFromRegistry(name, "Application")
    except win32_error() as exc:  # no source registered (a failed install): nothing to remove
        from .errors import winerror

        logs.windows_event_source_absent(log, name, winerror(exc), exc)


__all__ = ["EventLogHandler", "attach_event_log", "message_files", "register_event_source", "remove_event_source"]
