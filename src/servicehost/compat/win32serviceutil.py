"""``win32serviceutil`` — the real pywin32 module on Windows; elsewhere ``ServiceFramework``,
``HandleCommandLine`` and the helpers, on servicehost: the class runs as a servicehost service
(:class:`FrameworkService`) under the detected manager, and the commands are servicehost's
manager commands."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from ..platforms.windows.pywin32 import pywin32_module

    sys.modules[__name__] = pywin32_module("win32serviceutil")
else:
    import getopt
    import json
    import logging
    import os
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    from .. import config as config_mod
    from .. import logs
    from ..errors import ExitCode, ServiceHostError
    from ..host import Host
    from ..service import Service
    from ..stopping import Deadline, StopToken
    from . import servicemanager, win32service
    from .win32service import error as _win32_error

    error = RuntimeError  # pywin32 re-exports this alias
    ws = win32service

    # -- the framework ---------------------------------------------------------------------------
    class ServiceFramework:
        """pywin32's base class, with the same attributes, hooks and status reports."""

        _svc_deps_: Sequence[str] | None = None
        _exe_name_: str | None = None
        _exe_args_: str | None = None
        _svc_description_: str | None = None

        def __init__(self, args: Sequence[str]) -> None:
            self.ssh = servicemanager.RegisterServiceCtrlHandler(args[0], self.ServiceCtrlHandlerEx, True)
            servicemanager.SetEventSourceName(self._svc_name_)  # type: ignore[attr-defined]
            self.checkPoint = 0

        def GetAcceptedControls(self) -> int:
            accepted = 0
            if hasattr(self, "SvcStop"):
                accepted |= ws.SERVICE_ACCEPT_STOP
            if hasattr(self, "SvcPause") and hasattr(self, "SvcContinue"):
                accepted |= ws.SERVICE_ACCEPT_PAUSE_CONTINUE
            if hasattr(self, "SvcShutdown"):
                accepted |= ws.SERVICE_ACCEPT_SHUTDOWN
            return accepted

        def ReportServiceStatus(self, serviceStatus: int, waitHint: int = 5000, win32ExitCode: int = 0,
                                svcExitCode: int = 0) -> None:
            if self.ssh is None:
                return
            accepted = 0 if serviceStatus == ws.SERVICE_START_PENDING else self.GetAcceptedControls()
            if serviceStatus in (ws.SERVICE_RUNNING, ws.SERVICE_STOPPED):
                checkpoint = 0
            else:
                self.checkPoint += 1
                checkpoint = self.checkPoint
            ws.SetServiceStatus(self.ssh, (ws.SERVICE_WIN32_OWN_PROCESS, serviceStatus, accepted, win32ExitCode,
                                           svcExitCode, checkpoint, waitHint))

        def SvcInterrogate(self) -> None:
            self.ReportServiceStatus(ws.SERVICE_RUNNING)

        def SvcOther(self, control: int) -> None:
            try:
                print(f"Unknown control status - {control}")
            except OSError:  # services may have no valid stdout
                pass

        def ServiceCtrlHandler(self, control: int) -> Any:
            return self.ServiceCtrlHandlerEx(control, 0, None)

        def SvcOtherEx(self, control: int, event_type: int, data: Any) -> Any:
            return self.SvcOther(control)

        def ServiceCtrlHandlerEx(self, control: int, event_type: int, data: Any) -> Any:
            hooks = {ws.SERVICE_CONTROL_STOP: "SvcStop", ws.SERVICE_CONTROL_PAUSE: "SvcPause",
                     ws.SERVICE_CONTROL_CONTINUE: "SvcContinue", ws.SERVICE_CONTROL_INTERROGATE: "SvcInterrogate",
                     ws.SERVICE_CONTROL_SHUTDOWN: "SvcShutdown"}
            if control in hooks:
                return getattr(self, hooks[control])()
            return self.SvcOtherEx(control, event_type, data)

        def SvcRun(self) -> None:
            self.ReportServiceStatus(ws.SERVICE_RUNNING)
            self.SvcDoRun()  # type: ignore[attr-defined]
            self.ReportServiceStatus(ws.SERVICE_STOP_PENDING)

    # -- the bridge onto servicehost ------------------------------------------------------------------
    class FrameworkService(Service):
        """A ServiceFramework subclass as a servicehost service (what the SCM does, done by the host):
        ``start`` builds the instance, ``run`` is ``SvcRun``, ``stop``/``pause``/``resume``/``reload``/
        ``control`` send the control codes through its handler — only those it accepts."""

        ready_on_start = False

        def __init__(self, cls: type, args: Sequence[str]) -> None:
            self.name = cls._svc_name_  # type: ignore[attr-defined]
            super().__init__()
            self.cls, self.args = cls, list(args)
            self.instance: Any = None
            self.status: tuple[int, ...] = (ws.SERVICE_WIN32_OWN_PROCESS, ws.SERVICE_STOPPED, 0, 0, 0, 0, 0)
            self._handler: Callable[..., Any] | None = None
            self._use_ex = False

        def register(self, handler: Callable[..., Any], use_ex: bool) -> FrameworkService:
            self._handler, self._use_ex = handler, use_ex
            return self

        def report(self, status: tuple[int, ...]) -> None:
            """SetServiceStatus: RUNNING means ready."""
            self.status = status
            if status[1] == ws.SERVICE_RUNNING and not self.is_ready:
                self.ready()

        def start(self) -> None:
            servicemanager.set_running(True)
            with servicemanager.hosting(self):
                self.instance = self.cls([self.name, *self.args])
            if self._handler is None:
                raise RuntimeError(f"{self.cls.__name__} did not register a service control handler "
                                   "(call ServiceFramework.__init__)")

        def run(self, stop: StopToken) -> None:
            self.instance.SvcRun()

        def stop(self, deadline: Deadline) -> None:
            self.send(ws.SERVICE_CONTROL_STOP)

        def pause(self) -> None:
            self.send(ws.SERVICE_CONTROL_PAUSE)

        def resume(self) -> None:
            if self.instance.GetAcceptedControls() & ws.SERVICE_ACCEPT_PAUSE_CONTINUE:
                self.send(ws.SERVICE_CONTROL_CONTINUE)
            # else: never paused (the host undoing a refused pause): nothing to continue

        def reload(self) -> None:
            self.send(ws.SERVICE_CONTROL_PARAMCHANGE)

        def control(self, code: int) -> None:
            self.send(code)

        def send(self, control: int, event_type: int = 0, data: Any = None) -> Any:
            """Deliver a control as the SCM does: refused (error 1052) unless accepted."""
            needs = {ws.SERVICE_CONTROL_STOP: ws.SERVICE_ACCEPT_STOP,
                     ws.SERVICE_CONTROL_PAUSE: ws.SERVICE_ACCEPT_PAUSE_CONTINUE,
                     ws.SERVICE_CONTROL_CONTINUE: ws.SERVICE_ACCEPT_PAUSE_CONTINUE,
                     ws.SERVICE_CONTROL_SHUTDOWN: ws.SERVICE_ACCEPT_SHUTDOWN,
                     ws.SERVICE_CONTROL_PARAMCHANGE: ws.SERVICE_ACCEPT_PARAMCHANGE}.get(control, 0)
            if needs and not self.instance.GetAcceptedControls() & needs:
                raise _win32_error(1052, "ControlService", "The requested control is not valid for this service.")
            assert self._handler is not None
            return self._handler(control, event_type, data) if self._use_ex else self._handler(control)

    def run_framework(cls: type, args: Sequence[str], *, debug: bool = False) -> int:
        """Run ``cls`` as a service under the detected manager (``debug``: the foreground, DEBUG logs)
        until it stops; the exit code."""
        from .. import platforms

        hc = config_mod.load(service_name=cls._svc_name_).host  # type: ignore[attr-defined]
        logs.configure(level="DEBUG" if debug else hc.log_level, console=True)
        platform, reason = platforms.detect(choice="foreground" if debug else hc.manager)
        logs.platform_chosen(logging.getLogger("servicehost.compat"), platform.name, reason)
        host = Host([FrameworkService(cls, args)], hc)
        servicemanager.Debugging(debug)
        try:
            return int(platform.run(host, debug=debug))
        finally:
            servicemanager.Debugging(False)
            servicemanager.set_running(False)

    # -- the manager side ---------------------------------------------------------------------------
    def _manager() -> Any:
        """The manager servicehost installs into here (``SERVICEHOST_MANAGER`` chooses one)."""
        from .. import platforms

        platform, _ = platforms.detect_for_install(choice=config_mod.load(service_name="compat").host.manager)
        return platform.manager()

    def _control_error(exc: ServiceHostError, func: str) -> _win32_error:
        return _win32_error(int(exc.exit_code) or 1, func, str(exc))

    def _call(func: str, op: Callable[[], Any]) -> Any:
        try:
            return op()
        except ServiceHostError as exc:
            raise _control_error(exc, func) from None

    _STATES = {"running": ws.SERVICE_RUNNING, "starting": ws.SERVICE_START_PENDING,
               "stopping": ws.SERVICE_STOP_PENDING, "paused": ws.SERVICE_PAUSED, "stopped": ws.SERVICE_STOPPED,
               "failed": ws.SERVICE_STOPPED, "pausing": ws.SERVICE_PAUSE_PENDING, "resuming": ws.SERVICE_CONTINUE_PENDING}

    def QueryServiceStatus(serviceName: str, machine: str | None = None) -> tuple[int, ...]:
        """SERVICE_STATUS as pywin32 returns it, from the manager's status."""
        status = _call("QueryServiceStatus", lambda: _manager().status(serviceName))
        if status.state == "not-installed":
            raise _win32_error(1060, "OpenService", "The specified service does not exist as an installed service.")
        last = status.last_exit or 0
        win32_exit = 0 if last in (ExitCode.OK, ExitCode.STOP_INCOMPLETE) else ws.SERVICE_SPECIFIC_ERROR
        return (ws.SERVICE_WIN32_OWN_PROCESS, _STATES.get(status.state, ws.SERVICE_STOPPED), 0,
                win32_exit, last, 0, 0)

    def WaitForServiceStatus(serviceName: str, status: int, waitSecs: int, machine: str | None = None) -> None:
        from ..platforms.base import wait_until

        wait_until(lambda: QueryServiceStatus(serviceName)[1] == status, Deadline.after(float(waitSecs)),
                   lambda: _win32_error(1053, "QueryServiceStatus",
                                        "The service did not respond to the start or control request in a timely fashion."))

    def StartService(serviceName: str, args: Sequence[str] | None = None, machine: str | None = None) -> None:
        _call("StartService", lambda: _manager().start(serviceName, args=list(args or ()), wait=0))

    def StopService(serviceName: str, machine: str | None = None) -> tuple[int, ...]:
        _call("ControlService", lambda: _manager().stop(serviceName, wait=0))
        return QueryServiceStatus(serviceName)

    def StopServiceWithDeps(serviceName: str, machine: str | None = None, waitSecs: int = 30) -> None:
        _call("ControlService", lambda: _manager().stop(serviceName, wait=float(waitSecs)))

    def RestartService(serviceName: str, args: Sequence[str] | None = None, waitSeconds: int = 30,
                       machine: str | None = None) -> None:
        _call("ControlService", lambda: _manager().stop(serviceName, wait=float(waitSeconds)))
        StartService(serviceName, args)

    def ControlService(serviceName: str, code: int, machine: str | None = None) -> tuple[int, ...]:
        def send() -> None:
            manager = _manager()
            ops = {ws.SERVICE_CONTROL_STOP: lambda: manager.stop(serviceName, wait=0),
                   ws.SERVICE_CONTROL_PAUSE: lambda: manager.pause(serviceName),
                   ws.SERVICE_CONTROL_CONTINUE: lambda: manager.resume(serviceName),
                   ws.SERVICE_CONTROL_PARAMCHANGE: lambda: manager.reload(serviceName)}
            ops.get(code, lambda: manager.control(serviceName, code))()

        _call("ControlService", send)
        return QueryServiceStatus(serviceName)

    def GetServiceClassString(cls: type, argv: Sequence[str] | None = None) -> str:
        argv = sys.argv if argv is None else argv
        module = cls.__module__  # what pickle.whichmodule answers for a class
        if module == "__main__":
            module = os.path.splitext(os.path.abspath(argv[0]))[0]
        return f"{module}.{cls.__name__}"

    def LocatePythonServiceExe(exe: str | None = None) -> str:
        return os.path.abspath(exe) if exe and os.path.isfile(exe) else sys.executable

    def _options_file(service: Any) -> Path:
        name = getattr(service, "_svc_name_", service)
        return Path(config_mod.load(service_name=str(name)).host.state_dir) / "parameters.json"

    def SetServiceCustomOption(serviceName: Any, option: str, value: Any) -> None:
        """pywin32 keeps these under the service's registry key; here: a JSON file in its state dir."""
        path = _options_file(serviceName)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[option] = value
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))

    def GetServiceCustomOption(serviceName: Any, option: str, defaultValue: Any = None) -> Any:
        path = _options_file(serviceName)
        data = json.loads(path.read_text()) if path.exists() else {}
        return data.get(option, defaultValue)

    def InstallService(pythonClassString: str | None, serviceName: str, displayName: str, startType: int | None = None,
                       errorControl: int | None = None, bRunInteractive: int = 0, serviceDeps: Sequence[str] | None = None,
                       userName: str | None = None, password: str | None = None, exeName: str | None = None,
                       perfMonIni: str | None = None, perfMonDll: str | None = None, exeArgs: str | None = None,
                       description: str | None = None, delayedstart: bool | None = None) -> None:
        _install("install", serviceName, displayName, startType, serviceDeps, userName, description, delayedstart)

    def ChangeServiceConfig(pythonClassString: str | None, serviceName: str, startType: int | None = None,
                            errorControl: int | None = None, bRunInteractive: int = 0,
                            serviceDeps: Sequence[str] | None = None, userName: str | None = None,
                            password: str | None = None, exeName: str | None = None, displayName: str | None = None,
                            perfMonIni: str | None = None, perfMonDll: str | None = None, exeArgs: str | None = None,
                            description: str | None = None, delayedstart: bool | None = None) -> None:
        _install("update", serviceName, displayName or serviceName, startType, serviceDeps, userName, description,
                 delayedstart)

    def _install(how: str, name: str, display: str, start_type: int | None, deps: Sequence[str] | None,
                 user: str | None, description: str | None, delayed: bool | None) -> None:
        from ..platforms.base import InstallOptions, StartMode

        mode = {ws.SERVICE_AUTO_START: StartMode.DELAYED if delayed else StartMode.AUTO,
                ws.SERVICE_DISABLED: StartMode.DISABLED}.get(
            start_type if start_type is not None else ws.SERVICE_DEMAND_START, StartMode.MANUAL)
        script = os.path.abspath(sys.argv[0])
        options = InstallOptions(name=name, display_name=display, description=description or "", start_mode=mode,
                                 dependencies=tuple(deps or ()), account=user or "",
                                 state_dir=str(config_mod.load(service_name=name).host.state_dir))
        command = [sys.executable, script, "run"]
        _call("CreateService", lambda: getattr(_manager(), how)(options, command))

    def RemoveService(serviceName: str) -> None:
        _call("DeleteService", lambda: _manager().remove(serviceName))

    def DebugService(cls: type, argv: Sequence[str] = ()) -> int:
        """Run the service in this process, in the foreground: Ctrl+C is ``SvcStop``."""
        print(f"Debugging service {cls._svc_name_} - press Ctrl+C to stop.")  # type: ignore[attr-defined]
        return run_framework(cls, list(argv), debug=True)

    # -- the command line ----------------------------------------------------------------------------
    def usage() -> None:
        fname = os.path.split(sys.argv[0])[1]
        print(f"Usage: '{fname} [options] install|update|remove|start [...]|stop|restart [...]|debug [...]|run'")
        print("Options for 'install' and 'update' commands only:")
        print(" --username domain\\username : The Username the service is to run under")
        print(" --password password : not used here (services run as --username without one)")
        print(" --startup [manual|auto|disabled|delayed] : How the service starts, default = manual")
        print("Options for 'start' and 'stop' commands only:")
        print(" --wait seconds: Wait for the service to actually start or stop.")
        print("'run': run the service as a service manager launches it (servicehost).")
        sys.exit(1)

    def _refuse_abbreviations(argv: Sequence[str], shortopts: str, longopts: Sequence[str]) -> None:
        """getopt takes a unique prefix for a long option (``--user`` for ``--username``, ``--pass``
        for ``--password``); servicehost never abbreviates options: an inexact one is an error."""
        names = {o.rstrip("="): o.endswith("=") for o in longopts}
        i = 0
        while i < len(argv):
            token = argv[i]
            if token == "--" or not token.startswith("-") or token == "-":
                return  # getopt stops here too: the rest are arguments
            if token.startswith("--"):
                name, eq, _ = token[2:].partition("=")
                if name not in names:
                    raise getopt.GetoptError(f"option --{name} not recognized (options are never abbreviated)", name)
                i += 2 if names[name] and not eq else 1
                continue
            for j, letter in enumerate(token[1:], 1):  # -abc, -ovalue, -o value
                if shortopts.find(letter + ":") >= 0:
                    i += 1 if j < len(token) - 1 else 2
                    break
            else:
                i += 1

    def HandleCommandLine(cls: type, serviceClassString: str | None = None, argv: Sequence[str] | None = None,
                          customInstallOptions: str = "",
                          customOptionHandler: Callable[..., Any] | None = None) -> int:
        """pywin32's commands and options (options before the command, as getopt wants them)."""
        argv = list(sys.argv if argv is None else argv)
        if len(argv) <= 1:
            usage()
        name = cls._svc_name_  # type: ignore[attr-defined]
        display = cls._svc_display_name_  # type: ignore[attr-defined]
        longopts = ["password=", "username=", "startup=", "perfmonini=", "perfmondll=", "interactive", "wait="]
        try:
            _refuse_abbreviations(argv[1:], customInstallOptions, longopts)
            opts, args = getopt.getopt(argv[1:], customInstallOptions, longopts)
        except getopt.error as details:
            print(details)
            usage()
        user = None
        startup = delayed = None
        wait_secs = 0
        for opt, val in opts:
            if opt == "--username":
                user = val
            elif opt == "--password":
                print("--password is not used here: it would be visible in the process list; ignored")
            elif opt in ("--perfmonini", "--perfmondll", "--interactive"):
                print(f"{opt} has no equivalent here; ignored")
            elif opt == "--startup":
                modes = {"manual": ws.SERVICE_DEMAND_START, "auto": ws.SERVICE_AUTO_START,
                         "delayed": ws.SERVICE_AUTO_START, "disabled": ws.SERVICE_DISABLED}
                startup = modes.get(val.lower())
                if startup is None:
                    print(f"{val!r} is not a valid startup option")
                delayed = True if val.lower() == "delayed" else False if val.lower() == "auto" else None
            elif opt == "--wait":
                try:
                    wait_secs = int(val)
                except ValueError:
                    print("--wait must specify an integer number of seconds.")
                    usage()
        if not args:
            usage()
        arg, err = args[0], 0
        if arg in ("run", "debug"):  # what a manager launches / the foreground: the exit code is the process's
            code = run_framework(cls, args[1:]) if arg == "run" else DebugService(cls, args[1:])
            logs.flush()
            sys.exit(code)
        if arg == "start":
            print(f"Starting service {name}")
            try:
                StartService(name, args[1:])
                if wait_secs:
                    WaitForServiceStatus(name, ws.SERVICE_RUNNING, wait_secs)
            except _win32_error as exc:
                print(f"Error starting service: {exc.strerror}")
                err = exc.winerror
            return err
        if arg == "restart":
            print(f"Restarting service {name}")
            RestartService(name, args[1:])
            if wait_secs:
                WaitForServiceStatus(name, ws.SERVICE_RUNNING, wait_secs)
            return err
        if len(args) != 1:
            usage()
        description = getattr(cls, "_svc_description_", None)
        deps = getattr(cls, "_svc_deps_", None)
        if arg == "install":
            print(f"Installing service {name}")
            try:
                InstallService(serviceClassString, name, display, startType=startup, serviceDeps=deps,
                               userName=user, description=description, delayedstart=delayed)
                if customOptionHandler:
                    customOptionHandler(opts)
                print("Service installed")
            except _win32_error as exc:
                print(f"Error installing service: {exc.strerror} ({exc.winerror})")
                err = exc.winerror
            except ValueError as msg:  # from the custom option handler: undo the install
                print(f"Error installing service: {msg}")
                err = -1
                try:
                    RemoveService(name)
                except _win32_error:
                    print("Warning - could not remove the partially installed service.")
        elif arg == "update":
            print("Changing service configuration")
            try:
                ChangeServiceConfig(serviceClassString, name, startType=startup, serviceDeps=deps, userName=user,
                                    displayName=display, description=description, delayedstart=delayed)
                if customOptionHandler:
                    customOptionHandler(opts)
                print("Service updated")
            except _win32_error as exc:
                print(f"Error changing service configuration: {exc.strerror} ({exc.winerror})")
                err = exc.winerror
        elif arg == "remove":
            print(f"Removing service {name}")
            try:
                RemoveService(name)
                print("Service removed")
            except _win32_error as exc:
                print(f"Error removing service: {exc.strerror} ({exc.winerror})")
                err = exc.winerror
        elif arg == "stop":
            print(f"Stopping service {name}")
            try:
                if wait_secs:
                    StopServiceWithDeps(name, waitSecs=wait_secs)
                else:
                    StopService(name)
            except _win32_error as exc:
                print(f"Error stopping service: {exc.strerror} ({exc.winerror})")
                err = exc.winerror
        else:
            print(f"Unknown command - '{arg}'")
            usage()
        return err
