"""Hosting a pywin32 ``ServiceFramework`` class on servicehost (off Windows): what pythonservice.exe
and the SCM do for it on Windows, done by servicehost's host under the detected manager.

* :class:`FrameworkService` — the class as a servicehost service: ``start`` builds the instance
  (``cls([name, *args])``, as the SCM passes the service name first), ``run`` is ``SvcRun``, and
  stop/pause/continue/reload/custom codes are sent through the control handler the instance
  registered — only those its ``GetAcceptedControls()`` accepts (else error 1052, as the SCM; the
  host logs a refused one as one warning line: a SIGHUP to a service that takes no PARAMCHANGE).
* The service's status as the SCM keeps it: each ``SetServiceStatus`` (and each control handled)
  until it reports STOPPED is written to ``service_status.json`` in the service's state dir, with the process id, so
  that ``win32serviceutil.QueryServiceStatus`` in another process answers what the service last
  reported — accepted controls, checkpoint and wait hint included (``scm.py`` reads it).
* :func:`run_framework` — run a class under the detected manager (or the foreground) until it stops.
* :func:`load_class` — a pywin32 class string (``package.module.Class`` or
  ``/path/to/module.Class``, also ``C:\\path\\module.Class``) to its class, as pythonservice.exe
  loads the one ``InstallService`` recorded (``pythonservice.py`` is its command line).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import config as config_mod
from .. import logs
from ..errors import ControlRefused, UsageError
from ..host import Host
from ..service import Service
from ..stopping import Deadline, StopToken
from ..targets import import_named
from . import servicemanager, win32service as ws
from .win32service import error

log = logging.getLogger("servicehost.compat")

#: The file in the service's state dir that holds its last reported SERVICE_STATUS.
STATUS_FILE = "service_status.json"

#: The accept flag each control needs (the SCM refuses the control with 1052 without it).
NEEDS = {ws.SERVICE_CONTROL_STOP: ws.SERVICE_ACCEPT_STOP,
         ws.SERVICE_CONTROL_PAUSE: ws.SERVICE_ACCEPT_PAUSE_CONTINUE,
         ws.SERVICE_CONTROL_CONTINUE: ws.SERVICE_ACCEPT_PAUSE_CONTINUE,
         ws.SERVICE_CONTROL_SHUTDOWN: ws.SERVICE_ACCEPT_SHUTDOWN,
         ws.SERVICE_CONTROL_PARAMCHANGE: ws.SERVICE_ACCEPT_PARAMCHANGE,
         ws.SERVICE_CONTROL_NETBINDADD: ws.SERVICE_ACCEPT_NETBINDCHANGE,
         ws.SERVICE_CONTROL_NETBINDREMOVE: ws.SERVICE_ACCEPT_NETBINDCHANGE,
         ws.SERVICE_CONTROL_NETBINDENABLE: ws.SERVICE_ACCEPT_NETBINDCHANGE,
         ws.SERVICE_CONTROL_NETBINDDISABLE: ws.SERVICE_ACCEPT_NETBINDCHANGE,
         ws.SERVICE_CONTROL_PRESHUTDOWN: ws.SERVICE_ACCEPT_PRESHUTDOWN}
CONTROL_NAMES = {ws.SERVICE_CONTROL_STOP: "STOP", ws.SERVICE_CONTROL_PAUSE: "PAUSE",
                 ws.SERVICE_CONTROL_CONTINUE: "CONTINUE", ws.SERVICE_CONTROL_SHUTDOWN: "SHUTDOWN",
                 ws.SERVICE_CONTROL_PARAMCHANGE: "PARAMCHANGE", ws.SERVICE_CONTROL_PRESHUTDOWN: "PRESHUTDOWN"}


class ControlNotAccepted(error, ControlRefused):
    """Error 1052 for a control the service's ``GetAcceptedControls()`` leaves out: a pywin32 error
    to whoever sent it, one warning line (not a failed hook) for the host."""


# -- the status the SCM would keep -------------------------------------------------------------------
def status_path(state_dir: Path | str) -> Path:
    return Path(state_dir) / STATUS_FILE


def read_status(state_dir: Path | str) -> dict[str, Any] | None:
    """What the service last wrote: ``{"pid", "status" (the 7-tuple as a list), "handled"
    (controls its handler returned from)}``; None when there is nothing (readable) there."""
    try:
        data = json.loads(status_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("pid"), int) and isinstance(data.get("handled"), int)
            and isinstance(data.get("status"), list) and len(data["status"]) == 7
            and all(isinstance(v, int) for v in data["status"])):
        return None
    return data


# -- the class as a servicehost service ----------------------------------------------------------------
class FrameworkService(Service):
    """A ServiceFramework subclass as a servicehost service (what the SCM does, done by the host):
    ``start`` builds the instance, ``run`` is ``SvcRun``, ``stop``/``pause``/``resume``/``reload``/
    ``control`` send the control codes through its handler — only those it accepts."""

    ready_on_start = False

    def __init__(self, cls: type, args: Sequence[str], *, name: str | None = None) -> None:
        self.name = name or cls._svc_name_  # type: ignore[attr-defined]
        super().__init__()
        self.cls, self.args = cls, list(args)
        self.instance: Any = None
        self.status: tuple[int, ...] = (ws.SERVICE_WIN32_OWN_PROCESS, ws.SERVICE_STOPPED, 0, 0, 0, 0, 0)
        self.handled = 0
        self._handler: Callable[..., Any] | None = None
        self._use_ex = False
        self._write = threading.Lock()
        self._unwritable = False

    def register(self, handler: Callable[..., Any], use_ex: bool) -> FrameworkService:
        self._handler, self._use_ex = handler, use_ex
        return self

    def report(self, status: tuple[int, ...]) -> None:
        """SetServiceStatus: kept for QueryServiceStatus; RUNNING means ready. Once the service
        reported STOPPED, the SCM keeps that: what the process reports after it changes nothing
        (``SvcRun``'s STOP_PENDING after a ``SvcStop`` that reported STOPPED itself)."""
        if self.status[1] == ws.SERVICE_STOPPED and self.instance is not None:
            return
        self.status = status
        self._save()
        if status[1] == ws.SERVICE_RUNNING and not self.is_ready:
            self.ready()

    def _save(self) -> None:
        """Write the status where another process's QueryServiceStatus reads it (atomically)."""
        with self._write:
            if self._unwritable or not self.state_dir.is_absolute():  # a Host built without settings (tests)
                return
            path = status_path(self.state_dir)
            temp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temp.write_text(json.dumps({"pid": os.getpid(), "status": list(self.status),
                                            "handled": self.handled}), encoding="utf-8")
                os.replace(temp, path)
            except OSError as exc:  # the service runs on; only QueryServiceStatus knows less
                self._unwritable = True
                logs.compat_status_unwritable(log, self.name, path, exc)

    def start(self) -> None:
        servicemanager.set_running(True)
        # What pythonservice.exe reports once the instance exists, before SvcRun.
        self.status = (ws.SERVICE_WIN32_OWN_PROCESS, ws.SERVICE_START_PENDING, 0, 0, 0, 0, 5000)
        with servicemanager.hosting(self):
            self.instance = self.cls([self.name, *self.args])
        if self._handler is None:
            raise RuntimeError(f"{self.cls.__name__} did not register a service control handler "
                               "(call ServiceFramework.__init__)")
        self._save()

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
        needs = NEEDS.get(control, 0)
        if needs and not self.instance.GetAcceptedControls() & needs:
            refused = ControlNotAccepted(1052, "ControlService", "The requested control is not valid for this service.")
            refused.reason = (f"SERVICE_CONTROL_{CONTROL_NAMES.get(control, control)} refused: "
                              f"{self.cls.__name__}.GetAcceptedControls() does not accept it (error 1052)")
            raise refused
        assert self._handler is not None
        try:
            return self._handler(control, event_type, data) if self._use_ex else self._handler(control)
        finally:
            self.handled += 1
            self._save()


def run_framework(cls: type, args: Sequence[str], *, name: str | None = None, debug: bool = False,
                  platform: Any = None, settings: Mapping[str, str] | None = None,
                  config_file: Path | None = None) -> int:
    """Run ``cls`` as the service ``name`` (default: its ``_svc_name_``) under ``platform`` (default:
    the detected manager; ``debug``: the foreground, DEBUG logs) until it stops; the exit code.
    ``settings`` are setting flags' values (``{"state_dir": ...}``), ``config_file`` a TOML file."""
    from .. import platforms

    name = name or cls._svc_name_  # type: ignore[attr-defined]
    hc = config_mod.load(service_name=name, config_file=config_file, cli=settings).host
    logs.configure(level="DEBUG" if debug else hc.log_level, console=True)
    if platform is None:
        platform, reason = platforms.detect(choice="foreground" if debug else hc.manager)
    else:
        reason = "launched by it"
    logs.platform_chosen(log, platform.name, reason)
    host = Host([FrameworkService(cls, args, name=name)], hc)
    servicemanager.Debugging(debug)
    try:
        return int(platform.run(host, debug=debug))
    finally:
        servicemanager.Debugging(False)
        servicemanager.set_running(False)


# -- class strings ---------------------------------------------------------------------------------------
def load_class(class_string: str) -> type:
    """The class a pywin32 class string names, imported as pythonservice.exe does: ``a.b.Class``
    from the import path; ``/dir/module.Class`` (or ``C:\\dir\\module.Class``) with its folder put
    first on ``sys.path``, so the module's own imports work and its ``__main__`` block does not
    run. UsageError (exit 2) when it names no class."""
    module_part, dot, class_name = class_string.rpartition(".")
    if not dot or not module_part or not class_name.isidentifier():
        raise UsageError(f"class string {class_string!r}: expected package.module.Class or /path/to/module.Class")
    cut = max(module_part.rfind("/"), module_part.rfind("\\"))
    if cut >= 0:
        folder, module_name = module_part[:cut] or "/", module_part[cut + 1:]
        if folder not in sys.path:
            sys.path.insert(0, folder)
    else:
        module_name = module_part
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise UsageError(f"class string {class_string!r}: {module_name!r} is not a module name")
    module = import_named(module_name, f"class string {class_string!r}", "`python SCRIPT debug` shows the traceback")
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise UsageError(f"class string {class_string!r}: {module_name} has no class {class_name!r}")
    return cls
