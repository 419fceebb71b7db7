"""Running under the SCM: this process's connection to the Service Control Manager.

:class:`ScmSession` starts pywin32's dispatcher on a thread (``StartServiceCtrlDispatcher``), hands it
the class it instantiates (:func:`framework_class`: pywin32's hosting protocol, without
win32serviceutil), whose instance forwards every control to the session, and serves the host on the
main thread: host states → SERVICE_* statuses (RUNNING only once every service is ready), SCM
controls → host calls (STOP/SHUTDOWN/PRESHUTDOWN → request_stop, PAUSE/CONTINUE → pause/resume,
PARAMCHANGE → reload, 128–255 → control).
:class:`StatusReporter` re-sends a *_PENDING status every PUMP_INTERVAL with a rising checkpoint, so
the SCM sees progress for as long as a start, pause or drain lasts. The host's exit code becomes
the service's exit status (:func:`scm_exit_status`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ... import logs
from ...errors import ExitCode
from ...host import Host
from ...lifecycle import HostState
from . import ENTRY, eventlog
from .pywin32 import import_pywin32
from .stdio import ServiceStdio

log = logging.getLogger("servicehost.platforms.windows")

#: The wait hint sent with every *_PENDING status, and how often the pending status is re-sent with
#: the next checkpoint (Microsoft: about a tenth of the hint, at least 1 s). The SCM sees progress
#: at least once a second for as long as a start, pause or drain lasts.
WAIT_HINT_MS = 5000
PUMP_INTERVAL = 1.0
#: Seconds to wait for StartServiceCtrlDispatcher to call back (a hang guard: it takes milliseconds).
CONNECT_TIMEOUT = 30.0


def scm_exit_status(code: int) -> tuple[int, int]:
    """``(win32ExitCode, ServiceSpecificExitCode)`` for a servicehost exit code.

    With FAILURE_ACTIONS_FLAG the SCM runs the failure actions (a restart) for every stop whose
    win32 exit code is not 0. So every code no restart may follow reports 0 with the servicehost
    code beside it: a stop (OK, STOP_INCOMPLETE: an admin asked for it) and a failure a restart
    cannot mend (CONFIG_ERROR, START_FAILURE: ``ENTRY.exit_status``); only a crash or a hang
    (CRASH, HUNG) reports ERROR_SERVICE_SPECIFIC_ERROR (1066), so recovery restarts it.
    """
    from .errors import ERROR_SERVICE_SPECIFIC_ERROR  # (errors.py: not imported by a start)

    status = ENTRY.exit_status
    if status is not None and code in status.success + status.prevent_restart:
        return 0, int(code)
    return ERROR_SERVICE_SPECIFIC_ERROR, int(code)


class StatusReporter:
    """SetServiceStatus for one service. A pending status is re-sent every PUMP_INTERVAL with the
    next checkpoint, so the SCM sees progress for as long as a start, pause or drain lasts."""

    def __init__(self, ssh: Any, accepted: int) -> None:
        self._ws = import_pywin32("win32service")
        ws = self._ws
        self._ssh = ssh
        self._accepted = accepted
        self._pending = {ws.SERVICE_START_PENDING, ws.SERVICE_STOP_PENDING, ws.SERVICE_PAUSE_PENDING,
                         ws.SERVICE_CONTINUE_PENDING}
        self._lock = threading.Lock()
        self._state = 0  # nothing reported yet: pywin32 reports START_PENDING (checkpoint 0) first
        self._checkpoint = 0
        self._closed = threading.Event()
        threading.Thread(target=self._pump, name="servicehost-scm-pending", daemon=True).start()

    @property
    def state(self) -> int:
        return self._state

    def report(self, state: int, *, win32_exit: int = 0, service_exit: int = 0) -> None:
        ws = self._ws
        with self._lock:
            if self._closed.is_set():
                return
            self._state = state
            self._checkpoint = self._checkpoint + 1 if state in self._pending else 0
            quiet = state in (ws.SERVICE_START_PENDING, ws.SERVICE_STOP_PENDING, ws.SERVICE_STOPPED)
            status = (ws.SERVICE_WIN32_OWN_PROCESS, state, 0 if quiet else self._accepted, win32_exit,
                      service_exit, self._checkpoint, WAIT_HINT_MS if state in self._pending else 0)
            ws.SetServiceStatus(self._ssh, status)
            if state == ws.SERVICE_STOPPED:
                self._closed.set()

    def again(self) -> None:
        """Re-send the current status (INTERROGATE; a refused pause or continue)."""
        self.report(self._state)

    def close(self) -> None:
        self._closed.set()

    def _pump(self) -> None:
        while not self._closed.wait(PUMP_INTERVAL):
            if self._state in self._pending:
                try:
                    self.report(self._state)
                except Exception as exc:  # the SCM is gone (the process is ending): nothing to tell
                    logs.notify_failed(log, exc)
                    return


class _Ops:
    """The host calls the control thread runs in order (None ends it): SimpleQueue's put and get on
    a deque and a semaphore, so the queue module (heapq, the _queue extension) stays off the start."""

    def __init__(self) -> None:
        self._items: deque[Callable[[], None] | None] = deque()
        self._ready = threading.Semaphore(0)

    def put(self, op: Callable[[], None] | None) -> None:
        self._items.append(op)
        self._ready.release()

    def get(self) -> Callable[[], None] | None:
        self._ready.acquire()
        return self._items.popleft()


class ScmSession:
    """This process's connection to the SCM: the dispatcher thread, the ServiceFramework instance
    the SCM created, the status reporter, and the controls it sends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = threading.Event()  # ServiceMain ran, or the dispatcher failed
        self.error: str = ""                 # why there is no SCM connection
        self.start_args: tuple[str, ...] = ()
        self.status: StatusReporter | None = None
        self.host: Host | None = None
        self._states: dict[HostState, int] = {}  # host state → SERVICE_* status (serve)
        self._done = threading.Event()
        self._ops = _Ops()
        self._thread = threading.Thread(target=self._dispatch, name="servicehost-scm-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float = CONNECT_TIMEOUT) -> bool:
        if not self.connected.wait(timeout):
            self.error = self.error or f"no call from the SCM within {timeout:g}s"
        return self.status is not None

    def _dispatch(self) -> None:
        servicemanager = import_pywin32("servicemanager")
        try:
            servicemanager.Initialize(self.name, eventlog.message_files(self.name))
            servicemanager.PrepareToHostSingle(framework_class(self))
            servicemanager.StartServiceCtrlDispatcher()  # blocks until the service reports STOPPED
        except Exception as exc:  # pywintypes.error (1063: a console), or startup_error: no SCM
            from .errors import ERROR_FAILED_SERVICE_CONTROLLER_CONNECT

            winerror = getattr(exc, "winerror", None)
            self.error = ("started from a console, not by the SCM" if winerror == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT
                          else f"StartServiceCtrlDispatcher failed: {exc}")
        finally:
            self.connected.set()

    # -- called by the SCM (ServiceMain thread, control dispatcher thread) ----------------------------
    def attach(self, framework: Any, args: Sequence[str]) -> None:
        ws = import_pywin32("win32service")
        accepted = (ws.SERVICE_ACCEPT_STOP | ws.SERVICE_ACCEPT_SHUTDOWN | ws.SERVICE_ACCEPT_PRESHUTDOWN
                    | ws.SERVICE_ACCEPT_PAUSE_CONTINUE | ws.SERVICE_ACCEPT_PARAMCHANGE)
        self.start_args = tuple(args[1:])
        self.status = StatusReporter(framework.ssh, accepted)

    def service_thread(self) -> None:
        """``SvcRun``: START_PENDING from here on, then the SCM's service thread waits while the
        main thread runs the host. Only now may the host run: pywin32 reports START_PENDING
        (checkpoint 0) between the instance's ``__init__`` and ``SvcRun``, which would otherwise
        overwrite a RUNNING the host reported first."""
        assert self.status is not None
        self.status.report(import_pywin32("win32service").SERVICE_START_PENDING)
        self.connected.set()
        self._done.wait()

    def on_control(self, control: int, event_type: int, data: Any) -> int:
        """The control handler: must return at once, so hooks run on the control thread."""
        from .errors import ERROR_CALL_NOT_IMPLEMENTED, ERROR_SERVICE_CANNOT_ACCEPT_CTRL

        ws = import_pywin32("win32service")
        host, status = self.host, self.status
        logs.scm_control(log, control)
        if host is None or status is None:
            return ERROR_SERVICE_CANNOT_ACCEPT_CTRL
        names = {ws.SERVICE_CONTROL_STOP: "SvcStop", ws.SERVICE_CONTROL_SHUTDOWN: "SvcShutdown",
                 ws.SERVICE_CONTROL_PRESHUTDOWN: "preshutdown"}
        if control in names:
            status.report(ws.SERVICE_STOP_PENDING)
            host.request_stop(names[control])
        elif control == ws.SERVICE_CONTROL_INTERROGATE:
            status.again()
        elif control == ws.SERVICE_CONTROL_PAUSE:
            status.report(ws.SERVICE_PAUSE_PENDING)
            self._ops.put(host.pause)
        elif control == ws.SERVICE_CONTROL_CONTINUE:
            status.report(ws.SERVICE_CONTINUE_PENDING)
            self._ops.put(host.resume)
        elif control == ws.SERVICE_CONTROL_PARAMCHANGE:
            self._ops.put(host.reload)
        elif 128 <= control <= 255:
            self._ops.put(lambda: host.control(control))
        else:
            return ERROR_CALL_NOT_IMPLEMENTED
        return 0

    # -- called on the main thread ----------------------------------------------------------------------
    def serve(self, host: Host) -> ExitCode:
        """Run ``host`` as this service until it stops; report STOPPED with its exit code."""
        ws = import_pywin32("win32service")
        assert self.status is not None
        status = self.status
        states = {
            HostState.STARTING: ws.SERVICE_START_PENDING, HostState.RUNNING: ws.SERVICE_RUNNING,
            # a drain is not a pause: the service runs (lifecycle.py), so the SCM keeps RUNNING
            HostState.DRAINING: ws.SERVICE_RUNNING,
            HostState.PAUSING: ws.SERVICE_PAUSE_PENDING, HostState.PAUSED: ws.SERVICE_PAUSED,
            HostState.RESUMING: ws.SERVICE_CONTINUE_PENDING, HostState.STOPPING: ws.SERVICE_STOP_PENDING,
            HostState.STOPPED: ws.SERVICE_STOP_PENDING, HostState.FAILED: ws.SERVICE_STOP_PENDING,
        }
        self._states = states
        host.lifecycle.subscribe(lambda old, new: status.report(states[new]))
        for service in host.services:
            service.start_args = self.start_args  # docs/windows.md
        logs.scm_connected(log, self.name, list(self.start_args))
        self.host = host
        threading.Thread(target=self._run_controls, name="servicehost-scm-control", daemon=True).start()
        # The control channel: the named pipe (control_pipe.py), opened once the service runs, on
        # threads of its own (win32pipe, win32security and win32api stay off the start path).
        from ..once_ready import channel_once_ready

        def open_pipe() -> Any:
            from .control_pipe import own_sids, serve_pipe

            return serve_pipe(host, self.name, own_sids(self.name))

        code = ExitCode.CRASH
        try:
            with channel_once_ready(host, open_pipe):
                code = host.run()
        finally:
            self._ops.put(None)
            self.finish(code)
        return code

    def _run_controls(self) -> None:
        while (op := self._ops.get()) is not None:
            try:
                op()
            except Exception as exc:  # the host logged the hook's traceback; the SCM hears the state
                logs.scm_control_failed(log, getattr(op, "__name__", "control"), exc)
            finally:
                # the host's state, not the pending one on_control reported: a refused pause (e.g.
                # during a drain, which the SCM sees as RUNNING) must not leave PAUSE_PENDING
                if self.status is not None and self.host is not None and not self.host.state.is_final:
                    self.status.report(self._states[self.host.state])

    def finish(self, code: int) -> None:
        """Report STOPPED with ``code``. A non-zero code ends the process here: pywin32 would
        otherwise report STOPPED again, with exit code 0, once ``SvcRun`` returns."""
        win32_exit, service_exit = scm_exit_status(code)
        logs.scm_stopped(log, win32_exit, service_exit)
        if code != ExitCode.OK and self.status is not None:
            ws = import_pywin32("win32service")
            self.status.report(ws.SERVICE_STOPPED, win32_exit=win32_exit, service_exit=service_exit)
            logs.flush()
            os._exit(int(code))
        if self.status is not None:
            self.status.close()
        self._done.set()  # SvcRun returns; pywin32 reports STOPPED, exit code 0
        self._thread.join(CONNECT_TIMEOUT)


def framework_class(session: ScmSession) -> type:
    """The class servicemanager's ServiceMain instantiates for this process's service.

    pywin32's hosting protocol is two calls: ``cls(args)``, which must register a control handler
    (``servicemanager.RegisterServiceCtrlHandler``), then ``SvcRun()``, which returns once the service
    has stopped. That is what win32serviceutil.ServiceFramework's ``__init__`` does; doing it here
    keeps win32serviceutil (and the win32api, win32con and winerror it imports) off the start path.
    """
    servicemanager = import_pywin32("servicemanager")

    class HostedService:
        _svc_name_ = session.name
        _svc_display_name_ = session.name

        def __init__(self, args: Sequence[str]) -> None:
            self.ssh = servicemanager.RegisterServiceCtrlHandler(args[0], self.ServiceCtrlHandlerEx, True)
            servicemanager.SetEventSourceName(session.name)  # pywin32's own messages, under our source
            session.attach(self, args)

        def ServiceCtrlHandlerEx(self, control: int, event_type: int, data: Any) -> int:
            return session.on_control(control, event_type, data)

        def SvcRun(self) -> None:
            session.service_thread()

    return HostedService


_current: ScmSession | None = None  # the process's one SCM connection (one dispatcher per process)


def open_session(name: str) -> ScmSession:
    """Connect this process to the SCM as service ``name``, now, on a thread (the SCM waits at most
    30 s for that: error 1053). It becomes the process's session (:func:`current_session`)."""
    global _current
    _current = session = ScmSession(name)
    session.start()
    return session


def current_session() -> ScmSession | None:
    """The session :func:`open_session` opened in this process, if any."""
    return _current


def prepare_process(source: str) -> None:
    """Safe stdio, the Event Log handler (``source``: the service's name), a real interpreter
    for spawned processes."""
    root = logging.getLogger()
    for stream in (sys.stdout, sys.stderr):
        console = [h for h in root.handlers
                   if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream]
        for handler in console:  # a console handler writing into stdio would loop
            root.removeHandler(handler)
        if isinstance(stream, ServiceStdio):
            stream.start_logging(replay=not console)  # what a console handler wrote is in the log already
    if not isinstance(sys.stdout, ServiceStdio):
        sys.stdout = stdout = ServiceStdio(logs.windows_stdout)
        stdout.start_logging()
    if not isinstance(sys.stderr, ServiceStdio):
        sys.stderr = stderr = ServiceStdio(logs.windows_stderr)
        stderr.start_logging()
    eventlog.attach_event_log(source)  # where it cannot be opened, the log file still has everything
    # CPython spawns children with sys.executable; under pythonservice.exe that would be a
    # python.exe in sys.exec_prefix, which a venv lacks: then the base python.exe, which is real.
    # The ImagePath's own python.exe needs nothing (and multiprocessing stays off the start path).
    if Path(sys.executable).name.lower() not in ("python.exe", "pythonw.exe", "python_d.exe"):
        import multiprocessing

        multiprocessing.set_executable(str(Path(sys.base_exec_prefix) / "python.exe"))


__all__ = [
    "CONNECT_TIMEOUT", "PUMP_INTERVAL", "WAIT_HINT_MS", "ScmSession", "StatusReporter", "current_session",
    "framework_class", "open_session", "prepare_process", "scm_exit_status",
]
