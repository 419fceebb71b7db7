"""pywin32-shaped modules, so a pywin32 service runs unchanged but for its import lines::

    from servicehost.compat import servicemanager, win32event, win32service, win32serviceutil

On Windows each name *is* the real pywin32 module (handed out by ``platforms/windows/pywin32.py``, the
one door through which ``win32*`` comes in): nothing changes there. Elsewhere they are servicehost's own
implementations, and a ``win32serviceutil.ServiceFramework`` subclass runs as a servicehost
service under whatever manager is detected (the foreground, systemd, supervisord):

* ``SvcRun``/``SvcDoRun`` run on the service's thread; ``ReportServiceStatus(SERVICE_RUNNING)``
  (which the default ``SvcRun`` sends) is "ready"; ``SvcDoRun`` returning stops the service,
  an exception from it exits with code 1 (as pywin32 reports STOPPED with an error).
* A stop (SIGTERM, Ctrl-C, ``stop``) is ``SvcStop``; ``pause``/``continue`` are ``SvcPause``/
  ``SvcContinue``; a reload (SIGHUP) is SERVICE_CONTROL_PARAMCHANGE and a custom code 128–255 goes
  to ``SvcOtherEx`` — each only if ``GetAcceptedControls()`` accepts it, as the SCM decides.
* ``HandleCommandLine`` takes pywin32's commands and options (``install``, ``update``, ``remove``,
  ``start``, ``stop``, ``restart``, ``debug``; ``--startup``, ``--username``, ``--wait``, ...) and
  maps them onto servicehost's manager commands; ``run`` is what a manager launches.
* ``servicemanager.LogMsg`` and friends render pywin32's messages into the log (event ids
  5320–5322); ``win32event`` events are in-process (named events are not shared between processes).

Not provided off Windows: the rest of ``win32service`` (handles to the SCM itself), perfmon options,
``--interactive``. See docs/windows.md.
"""

import sys

if sys.platform == "win32":
    from types import ModuleType

    def __getattr__(name: str) -> ModuleType:
        """``from servicehost.compat import win32service`` on Windows: the real pywin32 module, handed
        out here without loading our module of that name (each file read costs time at every start;
        ``import servicehost.compat.win32service`` still works: that module hands out the same)."""
        from ..platforms.windows.pywin32 import COMPAT_MODULES, pywin32_module

        if name not in COMPAT_MODULES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module = pywin32_module(name)
        sys.modules[f"{__name__}.{name}"] = module
        globals()[name] = module
        return module
