"""What the Service Control Manager answers pywin32's service calls with, off Windows: the calls
``win32serviceutil`` makes (create, change, delete, start, control, query) on the servicehost
:class:`~servicehost.platforms.base.Manager` of the manager servicehost installs into here
(``SERVICEHOST_MANAGER`` chooses one), with the SCM's rules and its error codes and texts:

* a service that is not installed: 1060; installing one that is: 1073;
* starting one whose process runs (or starts, or stops): 1056; a disabled one: 1058;
* a control to one that does not run: 1062; to one starting or stopping: 1061; a control it does
  not accept (its last reported ``dwControlsAccepted``): 1052; SHUTDOWN, PRESHUTDOWN, the codes
  only the system sends and anything outside 1-255: 87. A control returns once the service's
  handler returned (as ControlService does), with the status the service reported by then;
* the status is what the service last reported with ``SetServiceStatus`` (``hosting.py`` keeps
  it) while its process runs, and once it does not, the STOPPED it reported itself or else
  STOPPED with its exit codes (win32 exit code 1077 for one that never ran since it was installed).

Anything else a manager refuses becomes a ``pywintypes.error`` whose text is servicehost's message
(what to fix). Requests are queued as the SCM's are (``wait=0``); ``win32serviceutil`` waits where
pywin32 waits.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .. import config as config_mod
from ..errors import ControlRefused, ExitCode, PlatformUnavailable, ServiceHostError, StartupError, StopIncomplete
from ..platforms.base import InstallOptions, Manager, ServiceStatus, StartMode, StatusCode, wait_until
from ..platforms.control import ControlChannelError, ControlUnavailable
from ..stopping import Deadline
from . import hosting, win32api, winerror
from . import win32service as ws
from .win32service import error

T = TypeVar("T")

#: How long a control may take to come back from the service's handler before ControlService
#: fails with 1053 (the SCM's limit for a handler; a hang guard, not a pace).
HANDLER_TIMEOUT = 30.0
#: The function pywin32 names in the error when a service name is not found (SmartOpenService
#: falls back to GetServiceKeyName, whose error is the one raised).
LOOKUP = "GetServiceKeyName"

_STATES = {"running": ws.SERVICE_RUNNING, "starting": ws.SERVICE_START_PENDING,
           "stopping": ws.SERVICE_STOP_PENDING, "paused": ws.SERVICE_PAUSED, "pausing": ws.SERVICE_PAUSE_PENDING,
           "resuming": ws.SERVICE_CONTINUE_PENDING}
#: Controls a service may be sent (with what it must accept: hosting.NEEDS); codes 128-255 always.
_SENDABLE = {ws.SERVICE_CONTROL_STOP, ws.SERVICE_CONTROL_PAUSE, ws.SERVICE_CONTROL_CONTINUE,
             ws.SERVICE_CONTROL_INTERROGATE, ws.SERVICE_CONTROL_PARAMCHANGE, ws.SERVICE_CONTROL_NETBINDADD,
             ws.SERVICE_CONTROL_NETBINDREMOVE, ws.SERVICE_CONTROL_NETBINDENABLE, ws.SERVICE_CONTROL_NETBINDDISABLE}


def win32_error(code: int, func: str) -> error:
    """The error pywin32 raises for ``code`` from ``func``, with Windows' text."""
    return error(code, func, win32api.FormatMessage(code)[:-2])


def _as_win32(exc: ServiceHostError, func: str) -> error:
    """A manager's error as the SCM's nearest code; the text is servicehost's (it says what to fix)."""
    if isinstance(exc, ControlRefused):
        code = winerror.ERROR_INVALID_SERVICE_CONTROL
    elif isinstance(exc, ControlUnavailable):
        code = winerror.ERROR_SERVICE_NOT_ACTIVE
    elif isinstance(exc, ControlChannelError):
        code = winerror.ERROR_SERVICE_CANNOT_ACCEPT_CTRL
    elif isinstance(exc, (StartupError, StopIncomplete)):
        code = winerror.ERROR_SERVICE_REQUEST_TIMEOUT
    elif isinstance(exc, PlatformUnavailable):
        code = winerror.ERROR_CALL_NOT_IMPLEMENTED
    elif exc.exit_code == ExitCode.CONFIG_ERROR:
        code = winerror.ERROR_INVALID_PARAMETER
    else:
        code = winerror.ERROR_SERVICE_SPECIFIC_ERROR
    return error(code, func, str(exc))


def call(func: str, op: Callable[[], T]) -> T:
    """``op()``, its servicehost errors raised as pywin32's (named ``func``)."""
    try:
        return op()
    except ServiceHostError as exc:
        raise _as_win32(exc, func) from None


def manager() -> Manager:
    """The manager servicehost installs into here (``SERVICEHOST_MANAGER`` chooses one)."""
    from .. import platforms

    def find() -> Manager:
        platform, _ = platforms.detect_for_install(choice=config_mod.load(service_name="compat").host.manager)
        return platform.manager()

    return call("OpenSCManager", find)


def installed(name: str, func: str = LOOKUP) -> Manager:
    """The manager holding ``name``; 1060 when it does not."""
    found = manager()
    if not call(func, lambda: found.is_installed(name)):
        raise win32_error(winerror.ERROR_SERVICE_DOES_NOT_EXIST, func)
    return found


def _state_dir(found: Manager, name: str) -> Path:
    """Where the installed service keeps its state (its install record says; else the default)."""
    record = call("QueryServiceConfig", lambda: found.record(name))
    if record is not None and record.options.state_dir:
        return Path(record.options.state_dir)
    return Path(config_mod.load(service_name=name).host.state_dir)


def _alive(status: ServiceStatus) -> bool:
    return status.code is StatusCode.RUNNING  # its process runs: running, or on its way


def _reported(found: Manager, name: str, status: ServiceStatus) -> dict[str, Any] | None:
    """What the running process last reported (None: nothing yet from this process)."""
    data = hosting.read_status(_state_dir(found, name))
    if data is None or (status.pid is not None and data["pid"] != status.pid):
        return None
    return data


def _query(found: Manager, name: str) -> tuple[ServiceStatus, tuple[int, ...], dict[str, Any] | None]:
    status = call("QueryServiceStatus", lambda: found.status(name))
    if status.state == "not-installed":
        raise win32_error(winerror.ERROR_SERVICE_DOES_NOT_EXIST, LOOKUP)
    if not _alive(status):  # as pythonservice.exe reports the end: 0, or 1066 + the code for a failure
        if status.last_exit is None:  # installed, never run: the SCM's 1077
            return status, (ws.SERVICE_WIN32_OWN_PROCESS, ws.SERVICE_STOPPED, 0,
                            winerror.ERROR_SERVICE_NEVER_STARTED, 0, 0, 0), None
        last = status.last_exit
        failed = last not in (ExitCode.OK, ExitCode.STOP_INCOMPLETE)
        data = None if failed else hosting.read_status(_state_dir(found, name))
        if data is not None and data["status"][1] == ws.SERVICE_STOPPED:
            return status, tuple(data["status"]), None  # the STOPPED the service reported itself
        return status, (ws.SERVICE_WIN32_OWN_PROCESS, ws.SERVICE_STOPPED, 0,
                        ws.SERVICE_SPECIFIC_ERROR if failed else 0, last if failed else 0, 0, 0), None
    data = _reported(found, name, status)
    if data is not None:
        return status, tuple(data["status"]), data
    # The process runs but has not built its service yet: pending, accepting nothing.
    return status, (ws.SERVICE_WIN32_OWN_PROCESS, _STATES.get(status.state, ws.SERVICE_START_PENDING), 0, 0, 0, 0,
                    0), None


def query(name: str) -> tuple[int, ...]:
    """QueryServiceStatus: the SERVICE_STATUS 7-tuple."""
    return _query(manager(), name)[1]


def start(name: str, args: Sequence[str] = ()) -> None:
    """StartService: queue the start (the service reports RUNNING itself)."""
    found = installed(name)
    status = call("StartService", lambda: found.status(name))
    if _alive(status):
        raise win32_error(winerror.ERROR_SERVICE_ALREADY_RUNNING, "StartService")
    if status.start_mode == StartMode.DISABLED:
        raise win32_error(winerror.ERROR_SERVICE_DISABLED, "StartService")
    call("StartService", lambda: found.start(name, args=list(args), wait=0))


def control(name: str, code: int) -> tuple[int, ...]:
    """ControlService: deliver ``code`` as the SCM does, once the service's handler returned; the
    status it reported by then."""
    found = installed(name)
    if code not in _SENDABLE and not 128 <= code <= 255:
        raise win32_error(winerror.ERROR_INVALID_PARAMETER, "ControlService")
    status, reported, data = _query(found, name)
    if not _alive(status):
        raise win32_error(winerror.ERROR_SERVICE_NOT_ACTIVE, "ControlService")
    if reported[1] in (ws.SERVICE_START_PENDING, ws.SERVICE_STOP_PENDING) or data is None:
        raise win32_error(winerror.ERROR_SERVICE_CANNOT_ACCEPT_CTRL, "ControlService")
    needs = hosting.NEEDS.get(code, 0)
    if needs and not reported[2] & needs:
        raise win32_error(winerror.ERROR_INVALID_SERVICE_CONTROL, "ControlService")
    if code == ws.SERVICE_CONTROL_INTERROGATE:
        return reported  # nothing changes: the status it last reported
    deliver = {ws.SERVICE_CONTROL_STOP: lambda: found.stop(name, wait=0),
               ws.SERVICE_CONTROL_PAUSE: lambda: found.pause(name),
               ws.SERVICE_CONTROL_CONTINUE: lambda: found.resume(name),
               ws.SERVICE_CONTROL_PARAMCHANGE: lambda: found.reload(name)}.get(code)
    if deliver is None and not 128 <= code <= 255:  # NETBIND*: no manager here can carry them
        raise win32_error(winerror.ERROR_INVALID_SERVICE_CONTROL, "ControlService")
    call("ControlService", deliver or (lambda: found.control(name, code)))
    assert data is not None
    before, pid = data["handled"], data["pid"]

    def handled() -> tuple[int, ...] | None:
        now, reported_now, seen = _query(found, name)
        if not _alive(now) or (seen is not None and (seen["pid"] != pid or seen["handled"] > before)):
            return reported_now
        return None

    after: tuple[int, ...] | None = wait_until(
        handled, Deadline.after(HANDLER_TIMEOUT),
        lambda: win32_error(winerror.ERROR_SERVICE_REQUEST_TIMEOUT, "ControlService"))
    assert after is not None  # wait_until returns only a true answer
    return after


def wait_for(name: str, state: int, seconds: float, func: str) -> None:
    """Until the service reports ``state``; 1053 (named ``func``) after ``seconds``."""
    found = manager()
    wait_until(lambda: _query(found, name)[1][1] == state, Deadline.after(seconds),
               lambda: win32_error(winerror.ERROR_SERVICE_REQUEST_TIMEOUT, func))


# -- create, change, delete --------------------------------------------------------------------------
def command(name: str, class_string: str | None, exe_name: str | None, exe_args: str | None,
            state_dir: Path, config_file: str) -> tuple[list[str], list[tuple[str, str]]]:
    """What the manager launches, and the variables it sets: ``exe_name`` (+ ``exe_args``), run as
    it is (a script hosting itself with StartServiceCtrlDispatcher when given no arguments), the
    state dir and config file then given as ``SERVICEHOST_STATE_DIR``/``SERVICEHOST_CONFIG``; else
    servicehost's pythonservice running the class ``class_string`` names (not the script's
    ``__main__``: a script that installs itself there is not run again by its own service)."""
    if exe_name:
        exe = os.path.abspath(exe_name) if os.path.isfile(exe_name) else exe_name
        env = [("SERVICEHOST_STATE_DIR", str(state_dir))] + ([("SERVICEHOST_CONFIG", config_file)] if config_file else [])
        return [exe, *shlex.split(exe_args or "")], env
    if not class_string:
        raise error(winerror.ERROR_INVALID_PARAMETER, "CreateService",
                    "no Python class string: give InstallService 'package.module.Class' or '/path/to/module.Class'")
    argv = [sys.executable, "-m", "servicehost.compat.pythonservice", "--name", name, "--state-dir", str(state_dir)]
    return argv + (["--config", config_file] if config_file else []) + [class_string], []


def _start_mode(start_type: int | None, delayed: bool | None, default: StartMode) -> StartMode:
    if start_type is None:
        return default
    if start_type == ws.SERVICE_AUTO_START:
        return StartMode.DELAYED if delayed else StartMode.AUTO
    return {ws.SERVICE_DISABLED: StartMode.DISABLED}.get(start_type, StartMode.MANUAL)


def create(name: str, display: str, *, class_string: str | None, start_type: int | None, deps: Sequence[str] | None,
           user: str | None, exe_name: str | None, exe_args: str | None, description: str | None,
           delayed: bool | None) -> None:
    """CreateService (+ the class string pythonservice.exe would read): 1073 when it exists."""
    found = manager()
    if call("CreateService", lambda: found.is_installed(name)):
        raise win32_error(winerror.ERROR_SERVICE_EXISTS, "CreateService")
    hc = config_mod.load(service_name=name).host
    config_file = os.environ.get("SERVICEHOST_CONFIG", "")
    argv, env = command(name, class_string, exe_name, exe_args, hc.state_dir, config_file)
    options = InstallOptions(name=name, display_name=display, description=description or "",
                             start_mode=_start_mode(start_type, delayed, StartMode.MANUAL),
                             dependencies=tuple(deps or ()), account=user or "", environment=tuple(env),
                             state_dir=str(hc.state_dir), config_file=config_file)
    call("CreateService", lambda: found.install(options, argv))


def change(name: str, *, class_string: str | None, start_type: int | None, deps: Sequence[str] | None,
           user: str | None, exe_name: str | None, exe_args: str | None, display: str | None,
           description: str | None, delayed: bool | None) -> None:
    """ChangeServiceConfig: what is given changes (None: no change), and the command is written
    again (the class or the executable may have moved), as pywin32 does."""
    import dataclasses

    found = installed(name)
    record = call("QueryServiceConfig", lambda: found.record(name))
    old = record.options if record is not None else InstallOptions(name=name, start_mode=StartMode.MANUAL)
    state_dir = Path(old.state_dir or config_mod.load(service_name=name).host.state_dir)
    argv, env = command(name, class_string, exe_name, exe_args, state_dir, old.config_file)
    kept = tuple((k, v) for k, v in old.environment if k not in ("SERVICEHOST_STATE_DIR", "SERVICEHOST_CONFIG"))
    options = dataclasses.replace(
        old, start_mode=_start_mode(start_type, delayed, old.start_mode), environment=kept + tuple(env),
        state_dir=str(state_dir), dependencies=old.dependencies if deps is None else tuple(deps),
        account=old.account if user is None else user,
        display_name=old.display_name if display is None else display,
        description=old.description if description is None else description)
    call("ChangeServiceConfig", lambda: found.update(options, argv))


def delete(name: str) -> None:
    """DeleteService (the manager stops it first)."""
    found = installed(name)
    call("DeleteService", lambda: found.remove(name))
