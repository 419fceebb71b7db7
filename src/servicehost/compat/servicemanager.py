"""``servicemanager`` — the real pywin32 module on Windows; elsewhere the same functions, with
``LogMsg`` and friends rendering pywin32's messages into the log (events 5320–5322), and
``PrepareToHostSingle`` + ``StartServiceCtrlDispatcher`` hosting the class under the detected manager."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from ..platforms.windows.pywin32 import pywin32_module

    sys.modules[__name__] = pywin32_module("servicemanager")
else:
    import contextlib
    import logging
    import threading
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    from .. import logs
    from .win32service import error

    COINIT_MULTITHREADED, COINIT_APARTMENTTHREADED, COINIT_DISABLE_OLE1DDE, COINIT_SPEED_OVER_MEMORY = 0, 2, 4, 8
    EVENTLOG_ERROR_TYPE, EVENTLOG_WARNING_TYPE, EVENTLOG_INFORMATION_TYPE = 1, 2, 4
    EVENTLOG_AUDIT_SUCCESS, EVENTLOG_AUDIT_FAILURE = 8, 16
    PYS_SERVICE_STARTING, PYS_SERVICE_STARTED = 0x40001000, 0x40001002
    PYS_SERVICE_STOPPING, PYS_SERVICE_STOPPED = 0x40001003, 0x40001004
    #: pywin32's message table (servicemanager.pyd) for the ids a service logs itself.
    MESSAGES = {
        PYS_SERVICE_STARTING: "The %1 service is starting%2.",
        PYS_SERVICE_STARTED: "The %1 service has started%2.",
        PYS_SERVICE_STOPPING: "The %1 service is stopping%2.",
        PYS_SERVICE_STOPPED: "The %1 service has stopped%2.",
    }

    class startup_error(Exception):
        """PrepareToHost* failed (as pywin32's servicemanager.startup_error)."""

    _state: dict[str, Any] = {"source": "Python Service", "debugging": False, "running": False, "classes": []}
    _log = logging.getLogger("servicehost.compat")
    _hosting = threading.local()  # the service an instance being constructed belongs to

    def render(event_id: int, inserts: Sequence[str] | None) -> str:
        """The text the Event Log shows for ``event_id`` with ``inserts`` (%1, %2, ... replaced)."""
        inserts = [str(i) for i in (inserts or ())]
        text = MESSAGES.get(event_id)
        if text is None:
            return " ".join(inserts)
        for number in range(9, 0, -1):  # %10 before %1 is not needed: pywin32's have at most %3
            text = text.replace(f"%{number}", inserts[number - 1] if number <= len(inserts) else "")
        return text

    def LogMsg(errorType: int, eventId: int, inserts: Sequence[str] | None = None) -> None:
        if inserts is not None and not isinstance(inserts, (list, tuple)):
            raise TypeError("strings must be None or a sequence")
        event = {EVENTLOG_ERROR_TYPE: logs.compat_log_error,
                 EVENTLOG_WARNING_TYPE: logs.compat_log_warning}.get(errorType, logs.compat_log_info)
        event(_log, f"{_state['source']}: {render(eventId, inserts)}")

    def LogInfoMsg(msg: str) -> None:
        LogMsg(EVENTLOG_INFORMATION_TYPE, 0, (msg,))

    def LogWarningMsg(msg: str) -> None:
        LogMsg(EVENTLOG_WARNING_TYPE, 0, (msg,))

    def LogErrorMsg(msg: str) -> None:
        LogMsg(EVENTLOG_ERROR_TYPE, 0, (msg,))

    def SetEventSourceName(sourceName: str, registerNow: bool = False) -> None:
        _state["source"] = sourceName

    # -- servicehost's own: how win32serviceutil's host tells this module what it hosts ---------------
    @contextlib.contextmanager
    def hosting(service: Any) -> Iterator[None]:
        """While ``service``'s ServiceFramework instance is being constructed (on this thread):
        ``RegisterServiceCtrlHandler`` binds its handler to ``service`` (which has ``register``)."""
        _hosting.service = service
        try:
            yield
        finally:
            _hosting.service = None

    def set_running(running: bool) -> None:
        """What ``RunningAsService()`` answers: True while a prepared class runs as a service."""
        _state["running"] = bool(running)

    def RegisterServiceCtrlHandler(serviceName: str, callback: Callable[..., Any], extra_args: bool = False) -> Any:
        """Bind ``callback`` as the control handler of the service being hosted; returns its
        status handle (what ``win32service.SetServiceStatus`` takes)."""
        host = getattr(_hosting, "service", None)
        if host is None:
            raise ValueError("The service name is not hosted by this process")
        return host.register(callback, bool(extra_args))

    def Debugging(newVal: int = -1) -> bool:
        old = bool(_state["debugging"])
        if newVal != -1:
            _state["debugging"] = bool(newVal)
        return old

    def RunningAsService() -> bool:
        return bool(_state["running"])

    def PumpWaitingMessages() -> int:
        return 0  # no window messages here

    def CoInitializeEx(flags: int) -> int:
        return 0

    def CoUninitialize() -> None:
        return None

    def Initialize(eventSourceName: str | None = None, eventSourceFile: str | None = None) -> None:
        if eventSourceName:
            _state["source"] = eventSourceName

    def Finalize() -> None:
        _state["classes"] = []

    def PrepareToHostSingle(klass: type | None = None) -> None:
        if klass is None:
            raise startup_error("PrepareToHostSingle failed! (a class is needed: there is no registry here)")
        _state["classes"] = [klass]

    def PrepareToHostMultiple(service_name: str, klass: type) -> None:
        _state["classes"].append(klass)

    def StartServiceCtrlDispatcher() -> None:
        """Host the prepared class under the manager that launched this process until it stops (its
        installed name: the manager's, else the class's ``_svc_name_``). Not launched by a manager
        (a terminal): error 1063, as on Windows. A failed service ends the process with its exit
        code (so its manager restarts a crash); a clean stop returns."""
        import os

        from .. import platforms
        from .hosting import run_framework

        platform, _ = platforms.detect()  # who launched us, whatever SERVICEHOST_MANAGER says
        if platform.name == "foreground" or not _state["classes"]:
            raise error(1063, "StartServiceCtrlDispatcher",
                        "The service process could not connect to the service controller.")
        cls = _state["classes"][0]
        name = os.environ.get("SUPERVISOR_PROCESS_NAME") or cls._svc_name_
        code = run_framework(cls, [], name=name, platform=platform)
        if code:
            raise SystemExit(code)
