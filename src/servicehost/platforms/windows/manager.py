"""Managing installed services: :class:`WindowsManager` talks to the Service Control Manager.

install / update register what ``service_config.py`` plans and writes (an existing service is
updated in place, as pywin32's install does; update keeps the account unless ``--username`` is
given); remove stops the service and its dependents first, then deletes it, its Event Log source and
its secret copies (``--purge``: its data too). start / stop / pause / continue / control / reload
send the request and, unless ``wait=0`` (queue it and return, as StartService does), wait for the
state it leads to while the service shows progress (:meth:`WindowsManager._wait`); restart with
``wait=0`` waits for the stop (a start cannot be queued behind it) and queues the start. status reads
the SCM's status and configuration; logs reads the Application log (or, where it cannot be read
back, the end of the service's log file). Needs an elevated (Administrator) process for install,
update and remove; status works for everyone.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ... import logs
from ...errors import ExitCode, PlatformUnavailable, StartupError, StopIncomplete, UsageError
from ...stopping import Deadline
from ..base import InstallOptions, ServiceStatus, wait_until
from ..record import InstallRecord
from . import credentials, eventlog, service_config
from .boot import command_line
from .errors import (
    ERROR_ACCESS_DENIED,
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_NEVER_STARTED,
    ERROR_SERVICE_NOT_ACTIVE,
    ERROR_SERVICE_SPECIFIC_ERROR,
    ServiceControlError,
    scm_error,
    winerror,
)
from .paths import SERVICES_KEY, message_file_path, remove_tree, service_data_dir, service_key, start_cache_file
from .pywin32 import import_pywin32, win32_error
from .security import needs_password

log = logging.getLogger("servicehost.platforms.windows")

STATE_NAMES = {1: "stopped", 2: "starting", 3: "stopping", 4: "running", 5: "resuming", 6: "pausing", 7: "paused"}
#: The SCM's own names of its states (``status``'s sub_state).
SCM_STATES = {1: "STOPPED", 2: "START_PENDING", 3: "STOP_PENDING", 4: "RUNNING", 5: "CONTINUE_PENDING",
              6: "PAUSE_PENDING", 7: "PAUSED"}


class WindowsManager:
    """Installs and controls services through the SCM. Needs an elevated (Administrator) process
    for install/update/remove; status works for everyone. Every wait asks the SCM through
    :func:`~servicehost.platforms.base.wait_until`."""

    name = "windows"

    def __init__(self, *, read_password: Callable[[str], str] | None = None) -> None:
        self._ws = import_pywin32("win32service")
        self._win_error = win32_error()  # what every pywin32 call raises
        self._read_password = read_password or prompt_password

    # -- install / update / remove ------------------------------------------------------------------
    def install(self, options: InstallOptions, command: list[str]) -> None:
        ws = self._ws
        if self._exists(options.name):
            logs.windows_already_installed(log, options.name)
            self.update(options, command)
            return
        plan = service_config.plan_install(options, command)
        password = self._password(plan.account)
        with self._scm() as scm:
            try:
                handle = ws.CreateService(
                    scm, options.name, options.display_name or options.name, ws.SERVICE_ALL_ACCESS,
                    ws.SERVICE_WIN32_OWN_PROCESS, plan.start_type, ws.SERVICE_ERROR_NORMAL,
                    command_line(plan.image), None, 0, list(options.dependencies) or None, plan.account, password)
            except self._win_error as exc:
                raise scm_error(exc, f"install {options.name}") from None
            finally:
                password = None
            try:
                service_config.configure_service(handle, options, plan)
            except BaseException:
                ws.DeleteService(handle)
                eventlog.remove_event_source(options.name)
                credentials.remove_secrets(options.name)
                raise
            finally:
                ws.CloseServiceHandle(handle)
        logs.windows_installed(log, options.name, command_line(plan.image))

    def update(self, options: InstallOptions, command: list[str]) -> None:
        """Change the service in place. The account is kept (no password asked) unless
        ``options.account`` names another one than the recorded install did."""
        ws = self._ws
        with self._service(options.name) as handle:
            current = ws.QueryServiceConfig(handle)[7] or "LocalSystem"
        previous = self.record(options.name) if self.is_installed(options.name) else None
        same = previous is not None and previous.options.account == options.account
        plan = service_config.plan_install(options, command, account=options.account or current)
        account = plan.account if options.account and not same else None  # else: keep the account
        password = self._password(account) if account else None
        with self._service(options.name) as handle:
            try:
                ws.ChangeServiceConfig(
                    handle, ws.SERVICE_WIN32_OWN_PROCESS, plan.start_type, ws.SERVICE_ERROR_NORMAL,
                    command_line(plan.image), None, 0, list(options.dependencies) or None, account, password,
                    options.display_name or options.name)
            except self._win_error as exc:
                raise scm_error(exc, f"update {options.name}") from None
            finally:
                password = None
            service_config.configure_service(handle, options, plan)
        logs.windows_updated(log, options.name, command_line(plan.image))

    def remove(self, name: str, *, purge: bool = False) -> None:
        ws = self._ws
        state_dir = service_config.read_parameter(name, "StateDirectory")
        self.stop(name)
        with self._service(name) as handle:
            try:
                ws.DeleteService(handle)
            except self._win_error as exc:
                raise scm_error(exc, f"remove {name}") from None
        eventlog.remove_event_source(name)
        credentials.remove_secrets(name)  # its secrets go with it, purge or not
        try:
            remove_tree(start_cache_file(name).parent)  # and its start cache
        except OSError:
            pass  # still open by an exiting process: it holds nothing secret, and install checks it
        data_dir = service_data_dir(name)
        message_file_path(name).unlink(missing_ok=True)
        if purge:
            import shutil

            for path in {data_dir, Path(state_dir)} if state_dir else {data_dir}:
                shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                data_dir.rmdir()  # only if empty: the default state dir lives here too
            except OSError:
                pass
        logs.windows_removed(log, name, ", state" if purge else "")

    def installed(self) -> list[str]:
        """The services whose key holds servicehost's ``Parameters`` (an install record, or the
        StateDirectory an older servicehost wrote)."""
        return sorted(name for name in _service_keys() if _parameters(name))

    def is_installed(self, name: str) -> bool:
        return bool(_parameters(name))

    def record(self, name: str) -> InstallRecord | None:
        """The install record in the service key's ``Parameters\\InstallRecord``."""
        values = _parameters(name)
        if not values:
            if self._exists(name):
                raise UsageError(f"{name} was not installed by servicehost (its service key has no servicehost "
                                 "Parameters); it is left alone")
            raise UsageError(f"{name} is not installed under the Service Control Manager: install it first, or "
                             "give the right --name")
        text = values.get(service_config.RECORD_VALUE, "")
        return InstallRecord.from_json(text, rf"HKLM\{service_key(name)}\Parameters") if text else None

    def _password(self, account: str | None) -> str | None:
        if not account or not needs_password(account):
            return None
        password = self._read_password(account)
        if not password:
            raise UsageError(f"no password given for {account}: type it at the prompt, or pipe it to stdin "
                             "(--password-stdin); it is never taken from the command line")
        return password

    # -- start / stop / controls / status -----------------------------------------------------------
    def start(self, name: str, *, args: Sequence[str] = (), wait: float | None = None) -> None:
        ws = self._ws
        with self._service(name) as handle:
            try:
                ws.StartService(handle, list(args) or None)
            except self._win_error as exc:
                if winerror(exc) != ERROR_SERVICE_ALREADY_RUNNING:
                    raise scm_error(exc, f"start {name}") from None
            final = self._wait(handle, ws.SERVICE_RUNNING, wait, pending=ws.SERVICE_START_PENDING,
                               expired=lambda state: StartupError(
                                   f"{name} is not ready after {wait:g}s (the SCM says {state}); it may still be "
                                   f"starting: see servicehost status --name {name}"))
            if final["CurrentState"] == ws.SERVICE_STOPPED:
                code = last_exit(final)
                raise StartupError(f"{name} stopped while starting (exit code {exit_text(code, final)}); "
                                   f"the Event Log (Application, source {name}) and its log file say why")

    def stop(self, name: str, *, wait: float | None = None) -> None:
        """Stop the services that depend on this one first (deepest first), then it: what
        pywin32's StopServiceWithDeps does, from the same registry values."""
        for dependent in dependents(name):
            with self._service(dependent) as handle:
                self._stop_one(handle, dependent, wait)
        with self._service(name) as handle:
            self._stop_one(handle, name, wait)

    def _stop_one(self, handle: Any, name: str, wait: float | None) -> None:
        ws = self._ws
        try:
            ws.ControlService(handle, ws.SERVICE_CONTROL_STOP)
        except self._win_error as exc:
            if winerror(exc) != ERROR_SERVICE_NOT_ACTIVE:
                raise scm_error(exc, f"stop {name}") from None
        self._wait(handle, ws.SERVICE_STOPPED, wait, pending=ws.SERVICE_STOP_PENDING,
                   expired=lambda state: StopIncomplete(
                       f"{name} is still {state} after {wait:g}s: see servicehost status --name {name}"))

    def restart(self, name: str, *, wait: float | None = None) -> None:
        """Stop, then start. The SCM cannot queue a start behind a stop: with ``wait=0`` the stop
        is waited for (while it shows progress), then the start is queued."""
        self.stop(name, wait=None if wait == 0 else wait)
        self.start(name, wait=wait)

    def pause(self, name: str) -> None:
        self._control_and_wait(name, self._ws.SERVICE_CONTROL_PAUSE, self._ws.SERVICE_PAUSED, "pause")

    def resume(self, name: str) -> None:
        self._control_and_wait(name, self._ws.SERVICE_CONTROL_CONTINUE, self._ws.SERVICE_RUNNING, "continue")

    def reload(self, name: str) -> None:
        self._control(name, self._ws.SERVICE_CONTROL_PARAMCHANGE, "reload (PARAMCHANGE)")

    def control(self, name: str, code: int) -> None:
        if not 128 <= code <= 255:
            raise UsageError(f"control code {code}: expected 128-255 (the range Windows allows for custom codes)")
        self._control(name, code, f"control {code}")

    def _control(self, name: str, code: int, what: str) -> None:
        with self._service(name) as handle:
            try:
                self._ws.ControlService(handle, code)
            except self._win_error as exc:
                raise scm_error(exc, f"{what} {name}") from None

    def _control_and_wait(self, name: str, code: int, target: int, what: str) -> None:
        self._control(name, code, what)
        with self._service(name) as handle:
            self._wait(handle, target, None, pending=None)

    def status(self, name: str) -> ServiceStatus:
        ws = self._ws
        try:
            with self._service(name, ws.SERVICE_QUERY_STATUS | ws.SERVICE_QUERY_CONFIG) as handle:
                st = ws.QueryServiceStatusEx(handle)
                config = ws.QueryServiceConfig(handle)
                try:
                    delayed = bool(ws.QueryServiceConfig2(handle, ws.SERVICE_CONFIG_DELAYED_AUTO_START_INFO))
                except self._win_error:  # not implemented by this SCM (Wine): not delayed
                    delayed = False
        except ServiceControlError as exc:
            if exc.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
                return ServiceStatus(name, self.name, "not-installed")
            raise
        state = STATE_NAMES.get(st["CurrentState"], "unknown")
        if state == "stopped" and (st["Win32ExitCode"] not in (0, ERROR_SERVICE_NEVER_STARTED)
                                   or _failure(last_exit(st))):  # 2 or 3: no restart follows (win32 0)
            state = "failed"
        pid = st["ProcessId"] or None
        start_mode = {2: "delayed" if delayed else "auto", 3: "manual", 4: "disabled"}.get(config[1], str(config[1]))
        detail = {"display name": config[8], "win32 exit code": str(st["Win32ExitCode"])}
        if st["CurrentState"] in (2, 3, 5, 6):
            detail["checkpoint"] = f"{st['CheckPoint']} (wait hint {st['WaitHint']} ms)"
        service: dict[str, Any] = {}  # what the service itself says on its control pipe
        if pid is not None and st["CurrentState"] in (4, 5, 6, 7):
            service = self._service_fields(name, pid, detail)
        ready = service.pop("ready", st["CurrentState"] in (4, 5, 6, 7))
        # The SCM's state is what status shows, but a drain is RUNNING to the SCM (a drain is not a
        # pause): the service's own word says it, as under every other manager (sub_state: the SCM's).
        if service.pop("state", None) == "draining" and state == "running":
            state = "draining"
        service.pop("sub_state", None)
        return ServiceStatus(name, self.name, state, pid=pid, uptime=uptime(pid), restarts=None,
                             last_exit=last_exit(st), detail=detail,
                             sub_state=SCM_STATES.get(st["CurrentState"], str(st["CurrentState"])),
                             ready=ready, account=config[7] or "LocalSystem",
                             start_mode=start_mode, **service)

    def _service_fields(self, name: str, pid: int, detail: dict[str, str]) -> dict[str, Any]:
        """The service's own status fields (``control_client.status_fields``), asked on its control pipe;
        none (and the reason in ``detail``) when it does not answer."""
        from ..control import STATUS_TIMEOUT, ControlChannelError
        from ..control_client import status_fields
        from .control_pipe import PipeClient, pipe_name

        try:
            answer = PipeClient(pipe_name(name), timeout=STATUS_TIMEOUT, server_pid=pid).call("status")
        except ControlChannelError as exc:
            detail["control channel"] = f"no answer ({exc})"
            return {}
        detail["control channel"] = pipe_name(name)
        fields = status_fields(answer)
        detail["service state"] = str(fields.get("sub_state"))
        return fields

    def ask(self, name: str, command: str, *, timeout: float | None = None, **args: Any) -> Any:
        """Run ``command`` in the running service through its control pipe (``control_pipe.py``),
        served by the pid the SCM gives the service."""
        from ..control import ControlUnavailable
        from .control_pipe import PipeClient, pipe_name

        ws = self._ws
        with self._service(name, ws.SERVICE_QUERY_STATUS) as handle:
            st = ws.QueryServiceStatusEx(handle)
        if st["CurrentState"] not in (4, 5, 6, 7) or not st["ProcessId"]:
            raise ControlUnavailable(f"{name} is not running under {self.name} "
                                     f"({STATE_NAMES.get(st['CurrentState'], 'unknown')}): nothing to ask")
        client = PipeClient(pipe_name(name), server_pid=st["ProcessId"],
                            **({"timeout": timeout} if timeout is not None else {}))
        return client.call(command, **args)

    def follow_logs(self, name: str, lines: int) -> list[str]:
        """Refused: the Event Log is read in records, not followed as a stream."""
        raise UsageError(f"the Service Control Manager keeps no log that can be followed: show the end with "
                         f"servicehost logs {name} -n {lines}, or watch the Application log in Event Viewer")

    def logs(self, name: str, size: int = 16384) -> str:
        """The end of the service's log: its records in the Application log (the SCM's log), newest
        last; where the Event Log cannot be read back (Wine), the end of its log file."""
        evtlog = import_pywin32("win32evtlog")
        kinds = {evtlog.EVENTLOG_ERROR_TYPE: "ERROR", evtlog.EVENTLOG_WARNING_TYPE: "WARNING"}
        lines: list[str] = []
        handle = evtlog.OpenEventLog(None, "Application")
        try:
            flags = evtlog.EVENTLOG_BACKWARDS_READ | evtlog.EVENTLOG_SEQUENTIAL_READ
            while sum(len(line) for line in lines) < size:
                records = evtlog.ReadEventLog(handle, flags, 0)
                if not records:
                    break
                lines += [f"{r.TimeGenerated} {kinds.get(r.EventType, 'INFO')} #{r.EventID & 0xFFFF}: "
                          + " ".join(r.StringInserts or ()) for r in records if r.SourceName == name]
        finally:
            evtlog.CloseEventLog(handle)
        if lines:
            return "\n".join(reversed(lines))[-size:] + "\n"
        state_dir = service_config.read_parameter(name, "StateDirectory")
        files = sorted(Path(state_dir, "logs").glob("*.log"), key=lambda p: p.stat().st_mtime) if state_dir else []
        if not files:
            raise ServiceControlError(f"no log of {name} found: neither Event Log records nor {state_dir}\\logs\\*.log")
        with open(files[-1], "rb") as fh:
            fh.seek(max(0, files[-1].stat().st_size - size))
            return fh.read().decode("utf-8", "replace")

    def _wait(self, handle: Any, target: int, wait: float | None, *, pending: int | None,
              expired: Callable[[str], BaseException] | None = None) -> dict[str, Any]:
        """Ask the SCM until the service is ``target`` (or STOPPED, when ``pending`` names the
        move under way); its last status. ``wait=None``: as long as the service shows progress (a
        new state or checkpoint within its wait hint, as Microsoft's samples do); a number: at
        most that many seconds, then ``expired(state)`` is raised; 0: do not wait."""
        ws = self._ws
        st = ws.QueryServiceStatusEx(handle)
        if wait == 0:
            return st  # type: ignore[no-any-return]
        progress_at, seen = time.monotonic(), (st["CurrentState"], st["CheckPoint"])

        def there() -> bool:
            nonlocal st, progress_at, seen
            st = ws.QueryServiceStatusEx(handle)
            if st["CurrentState"] == target or (st["CurrentState"] == ws.SERVICE_STOPPED and pending is not None):
                return True
            now = time.monotonic()
            if (st["CurrentState"], st["CheckPoint"]) != seen:
                progress_at, seen = now, (st["CurrentState"], st["CheckPoint"])
            elif wait is None and now - progress_at > max(st["WaitHint"] / 1000.0, 10.0):
                raise ServiceControlError(
                    f"the service shows no progress: {STATE_NAMES.get(st['CurrentState'])} at checkpoint "
                    f"{st['CheckPoint']} for {now - progress_at:.0f}s (its wait hint is {st['WaitHint']} ms)")
            return False

        def gave_up() -> BaseException:
            state = STATE_NAMES.get(st["CurrentState"], str(st["CurrentState"]))
            if expired is not None:
                return expired(state)
            return ServiceControlError(f"gave up after {wait:g}s: the service is {state}")

        wait_until(there, Deadline.after(wait), gave_up)
        return st  # type: ignore[no-any-return]

    # -- handles and errors ---------------------------------------------------------------------------
    def _exists(self, name: str) -> bool:
        try:
            with self._service(name, self._ws.SERVICE_QUERY_STATUS):
                return True
        except ServiceControlError as exc:
            if exc.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
                return False
            raise

    def _scm(self) -> ScmHandle:
        ws = self._ws
        try:
            return ScmHandle(ws, ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS))
        except self._win_error:
            try:
                return ScmHandle(ws, ws.OpenSCManager(None, None, ws.SC_MANAGER_CONNECT))
            except self._win_error as exc:
                raise scm_error(exc, "open the Service Control Manager") from None

    def _service(self, name: str, access: int | None = None) -> ScmHandle:
        ws = self._ws
        with self._scm() as scm:
            try:
                return ScmHandle(ws, ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS if access is None else access))
            except self._win_error as exc:
                if access is None and winerror(exc) == ERROR_ACCESS_DENIED:
                    return self._service(name, ws.SERVICE_QUERY_STATUS | ws.SERVICE_QUERY_CONFIG
                                         | ws.SERVICE_START | ws.SERVICE_STOP | ws.SERVICE_PAUSE_CONTINUE
                                         | ws.SERVICE_INTERROGATE | ws.SERVICE_USER_DEFINED_CONTROL
                                         | ws.SERVICE_ENUMERATE_DEPENDENTS)
                raise scm_error(exc, f"open service {name}") from None


class ScmHandle:
    """A service or SCM handle that closes itself (``with``)."""

    def __init__(self, ws: ModuleType, handle: Any) -> None:
        self._ws, self.handle = ws, handle

    def __enter__(self) -> Any:
        return self.handle

    def __exit__(self, *exc: object) -> None:
        self._ws.CloseServiceHandle(self.handle)


def dependents(name: str) -> list[str]:
    """Every service depending on ``name``, directly or not, in stopping order (deepest first),
    read from the ``DependOnService`` values (EnumDependentServices misses them under Wine)."""
    if sys.platform != "win32":  # no registry (and mypy checks winreg only on win32)
        raise PlatformUnavailable("the Service Control Manager exists only on Windows")
    import winreg

    depended_by: dict[str, list[str]] = {}
    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, SERVICES_KEY) as root:
        for index in range(winreg.QueryInfoKey(root)[0]):
            service = winreg.EnumKey(root, index)
            try:
                with winreg.OpenKey(root, service) as key:
                    depends_on = winreg.QueryValueEx(key, "DependOnService")[0]
            except OSError:
                continue
            for dependency in depends_on or ():
                depended_by.setdefault(dependency.lower(), []).append(service)
    order: list[str] = []

    def visit(service: str) -> None:
        for dependent in depended_by.get(service.lower(), []):
            if dependent not in order:
                visit(dependent)
                order.append(dependent)

    visit(name)
    return order


def _service_keys() -> list[str]:
    """The names of every service the SCM keeps (the subkeys of SERVICES_KEY)."""
    if sys.platform != "win32":  # no registry (and mypy checks winreg only on win32)
        raise PlatformUnavailable("the Service Control Manager exists only on Windows")
    import winreg

    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, SERVICES_KEY) as root:
        return [winreg.EnumKey(root, index) for index in range(winreg.QueryInfoKey(root)[0])]


def _parameters(name: str) -> dict[str, str]:
    """servicehost's values in the service key's ``Parameters`` (empty: none, or no such service)."""
    values = {key: service_config.read_parameter(name, key)
              for key in (service_config.RECORD_VALUE, "StateDirectory")}
    return {key: value for key, value in values.items() if value}


def last_exit(st: Mapping[str, int]) -> int | None:
    """The servicehost exit code the service reported (``session.scm_exit_status``: beside win32 exit
    code 0 for a code no restart may follow, beside 1066 for a crash or a hang); None for a win32 error."""
    if st["Win32ExitCode"] in (0, ERROR_SERVICE_SPECIFIC_ERROR):
        return st["ServiceSpecificExitCode"]
    return None


def _failure(code: int | None) -> bool:
    try:
        return code is not None and ExitCode(code).is_failure
    except ValueError:
        return False


def exit_text(code: int | None, st: Mapping[str, int]) -> str:
    if code is None:
        return f"win32 error {st['Win32ExitCode']}"
    try:
        return f"{code} ({ExitCode(code).name})"
    except ValueError:
        return str(code)


def uptime(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        api, process, con = import_pywin32("win32api"), import_pywin32("win32process"), import_pywin32("win32con")
        handle = api.OpenProcess(con.PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        try:
            created = process.GetProcessTimes(handle)["CreationTime"]
        finally:
            api.CloseHandle(handle)
        return max(0.0, time.time() - float(created.timestamp()))
    except Exception as exc:  # no access to the process: unknown
        logs.windows_uptime_unknown(log, pid, exc)
        return None


def prompt_password(account: str) -> str:
    """The account's password: one line from stdin when it is piped, else a prompt without echo.
    Never from the command line, never logged or stored by servicehost."""
    if sys.stdin is not None and not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    return getpass.getpass(f"password for {account}: ")


__all__ = [
    "SCM_STATES", "STATE_NAMES", "ScmHandle", "WindowsManager", "dependents", "exit_text", "last_exit", "prompt_password",
    "uptime",
]
