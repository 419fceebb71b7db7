"""``win32serviceutil`` — the real pywin32 module on Windows; elsewhere ``ServiceFramework``,
``HandleCommandLine`` and the helpers, with pywin32's behaviour: each helper makes the same calls
as pywin32's, answered by ``scm.py`` (the SCM's rules and error codes, on the servicehost manager
installed into here), and the class runs as a servicehost service (``hosting.py``): installed from
its class string, it is run by ``python -m servicehost.compat.pythonservice`` (pythonservice.exe)."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from ..platforms.windows.pywin32 import pywin32_module

    sys.modules[__name__] = pywin32_module("win32serviceutil")
else:
    import getopt
    import json
    import os
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    from .. import config as config_mod
    from .. import logs
    from ..platforms.base import wait_until
    from ..stopping import Deadline
    from . import scm, servicemanager, win32service, winerror
    from .hosting import FrameworkService, run_framework  # noqa: F401 (servicehost's own, used by tests)
    from .pywintypes import error as _win32_error

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

    # -- the SCM's calls, as pywin32 makes them ----------------------------------------------------------
    def QueryServiceStatus(serviceName: str, machine: str | None = None) -> tuple[int, ...]:
        """The SERVICE_STATUS the service last reported (STOPPED with its exit codes once it ended)."""
        return scm.query(serviceName)

    def WaitForServiceStatus(serviceName: str, status: int, waitSecs: int, machine: str | None = None) -> None:
        """Until the service reports ``status``; error 1053 after ``waitSecs`` seconds."""
        if waitSecs <= 0:  # pywin32 asks no single time
            raise scm.win32_error(winerror.ERROR_SERVICE_REQUEST_TIMEOUT, "QueryServiceStatus")
        scm.wait_for(serviceName, status, float(waitSecs), "QueryServiceStatus")

    def StartService(serviceName: str, args: Sequence[str] | None = None, machine: str | None = None) -> None:
        scm.start(serviceName, list(args or ()))

    def ControlService(serviceName: str, code: int, machine: str | None = None) -> tuple[int, ...]:
        return scm.control(serviceName, code)

    def StopService(serviceName: str, machine: str | None = None) -> tuple[int, ...]:
        return ControlService(serviceName, ws.SERVICE_CONTROL_STOP, machine)

    def StopServiceWithDeps(serviceName: str, machine: str | None = None, waitSecs: int = 30) -> None:
        """Stop it and wait up to ``waitSecs`` until it has stopped (error 1053 after that); a service
        that does not run is no error. Services depending on it: their manager stops them first."""
        scm.installed(serviceName, "OpenService")
        try:
            StopService(serviceName, machine)
        except _win32_error as exc:
            if exc.winerror != winerror.ERROR_SERVICE_NOT_ACTIVE:
                raise
        if waitSecs <= 0:
            raise scm.win32_error(winerror.ERROR_SERVICE_REQUEST_TIMEOUT, "ControlService")
        scm.wait_for(serviceName, ws.SERVICE_STOPPED, float(waitSecs), "ControlService")

    def RestartService(serviceName: str, args: Sequence[str] | None = None, waitSeconds: int = 30,
                       machine: str | None = None) -> None:
        """Stop it (if it runs), then start it again, trying for up to ``waitSeconds`` while the old
        process is still stopping; gives up with pywin32's message."""
        try:
            StopService(serviceName, machine)
        except _win32_error as exc:
            if exc.winerror != winerror.ERROR_SERVICE_NOT_ACTIVE:
                raise
        def started() -> bool:
            try:
                StartService(serviceName, args, machine)
                return True
            except _win32_error as exc:
                if exc.winerror != winerror.ERROR_SERVICE_ALREADY_RUNNING:
                    raise
                return False

        try:
            wait_until(started, Deadline.after(float(waitSeconds)), TimeoutError, longest=1.0)
        except TimeoutError:
            print("Gave up waiting for the old service to stop!")

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
        """Install the service to run the class ``pythonClassString`` names (or ``exeName exeArgs``,
        as it is); error 1073 when it is installed already."""
        scm.create(serviceName, displayName, class_string=pythonClassString, start_type=startType, deps=serviceDeps,
                   user=userName, exe_name=exeName, exe_args=exeArgs, description=description,
                   delayed=delayedstart)

    def ChangeServiceConfig(pythonClassString: str | None, serviceName: str, startType: int | None = None,
                            errorControl: int | None = None, bRunInteractive: int = 0,
                            serviceDeps: Sequence[str] | None = None, userName: str | None = None,
                            password: str | None = None, exeName: str | None = None, displayName: str | None = None,
                            perfMonIni: str | None = None, perfMonDll: str | None = None, exeArgs: str | None = None,
                            description: str | None = None, delayedstart: bool | None = None) -> None:
        """Change what is given (None: no change) and write the command again."""
        scm.change(serviceName, class_string=pythonClassString, start_type=startType, deps=serviceDeps,
                   user=userName, exe_name=exeName, exe_args=exeArgs, display=displayName,
                   description=description, delayed=delayedstart)

    def RemoveService(serviceName: str) -> None:
        scm.delete(serviceName)

    def DebugService(cls: type, argv: Sequence[str] = ()) -> int:
        """Run the service in this process, in the foreground: Ctrl+C is ``SvcStop``."""
        print(f"Debugging service {cls._svc_name_} - press Ctrl+C to stop.")  # type: ignore[attr-defined]
        return run_framework(cls, list(argv), debug=True)

    # -- the command line ----------------------------------------------------------------------------
    def usage() -> None:
        """pywin32's usage text; exit 1."""
        fname = os.path.split(sys.argv[0])[1]
        print(f"Usage: '{fname} [options] install|update|remove|start [...]|stop|restart [...]|debug [...]'")
        print("Options for 'install' and 'update' commands only:")
        print(" --username domain\\username : The Username the service is to run under")
        print(" --password password : The password for the username")
        print(" --startup [manual|auto|disabled|delayed] : How the service starts, default = manual")
        print(" --interactive : Allow the service to interact with the desktop.")
        print(" --perfmonini file: .ini file to use for registering performance monitor data")
        print(" --perfmondll file: .dll file to use when querying the service for")
        print("   performance data, default = perfmondata.dll")
        print("Options for 'start' and 'stop' commands only:")
        print(" --wait seconds: Wait for the service to actually start or stop.")
        print("                 If you specify --wait with the 'stop' option, the service")
        print("                 and all dependent services will be stopped, each waiting")
        print("                 the specified period.")
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
        """pywin32's commands, options, messages and return values (the error code; 0 for success),
        on the manager servicehost installs into here. ``debug`` runs the service in this process,
        in the foreground (no install needed); ``run`` runs it as a manager launches it (the
        command servicehost installed for these scripts before they were installed by class)."""
        argv = list(sys.argv if argv is None else argv)
        if len(argv) <= 1:
            usage()
        name = cls._svc_name_  # type: ignore[attr-defined]
        display = cls._svc_display_name_  # type: ignore[attr-defined]
        if serviceClassString is None:
            serviceClassString = GetServiceClassString(cls)
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
                print("--password is not used here: the manager runs the service as --username without one")
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
        if not args:  # (pywin32 fails here with an IndexError)
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
        if arg == "restart":  # as pywin32: an error here is raised, not printed
            print(f"Restarting service {name}")
            RestartService(name, args[1:])
            if wait_secs:
                WaitForServiceStatus(name, ws.SERVICE_RUNNING, wait_secs)
            return err
        if len(args) != 1:
            usage()
        description = getattr(cls, "_svc_description_", None)
        deps = getattr(cls, "_svc_deps_", None)
        exe_name = getattr(cls, "_exe_name_", None)
        exe_args = getattr(cls, "_exe_args_", None)
        if arg == "install":
            print(f"Installing service {name}")
            try:
                InstallService(serviceClassString, name, display, startType=startup, serviceDeps=deps,
                               userName=user, exeName=exe_name, exeArgs=exe_args, description=description,
                               delayedstart=delayed)
                if customOptionHandler:
                    customOptionHandler(opts)
                print("Service installed")
            except _win32_error as exc:
                if exc.winerror == winerror.ERROR_SERVICE_EXISTS:
                    arg = "update"  # as pywin32: installing what exists updates it
                else:
                    print(f"Error installing service: {exc.strerror} ({exc.winerror})")
                    err = exc.winerror
            except ValueError as msg:  # from the custom option handler: undo the install
                print(f"Error installing service: {msg}")
                err = -1
                try:
                    RemoveService(name)
                except _win32_error:
                    print("Warning - could not remove the partially installed service.")
        if arg == "update":
            print("Changing service configuration")
            try:
                ChangeServiceConfig(serviceClassString, name, startType=startup, serviceDeps=deps, userName=user,
                                    exeName=exe_name, exeArgs=exe_args, displayName=display,
                                    description=description, delayedstart=delayed)
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
        elif arg != "install":
            print(f"Unknown command - '{arg}'")
            usage()
        return err
