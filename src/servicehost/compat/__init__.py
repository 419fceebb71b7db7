"""pywin32-shaped modules, so a pywin32 service runs unchanged but for its import lines::

    from servicehost.compat import servicemanager, win32event, win32service, win32serviceutil
    from servicehost.compat import pywintypes, win32api, win32con, winerror, win32timezone

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
* Around them, what service code uses of ``win32api`` (``Sleep``, ``SetConsoleCtrlHandler``,
  ``GetCurrentProcessId``, ``GetLastError``, ...), the constants of ``win32con`` and ``winerror``
  with pywin32's values, ``pywintypes.error`` (what every compat call raises) and ``win32timezone``.
  A pywin32 name that cannot mean anything here exists and raises NotImplementedError naming the
  alternative when called (``_unavailable.py``).

Not provided off Windows: the rest of ``win32service`` (handles to the SCM itself), perfmon options,
``--interactive``, and the modules in :data:`OUT_OF_SCOPE` (importing one says why). The table of
what is supported, emulated and not available: docs/compat.md.
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
else:
    #: pywin32 modules servicehost.compat does not provide off Windows, and why.
    OUT_OF_SCOPE = {
        "win32pipe": "named-pipe servers (and their security descriptors) are Windows': serve a unix socket or "
                     "TCP on 127.0.0.1 (servicehost's EventServer)",
        "win32file": "Win32 file handles and overlapped I/O are Windows': use open(), os and selectors",
        "win32security": "Windows accounts, SIDs and security descriptors: a service's rights here are its "
                         "account and file modes",
        "ntsecuritycon": "Windows security constants: a service's rights here are its account and file modes",
        "win32gui": "device notifications and windows need a desktop: watch udev or inotify instead",
        "win32gui_struct": "device notifications need a desktop: watch udev or inotify instead",
        "win32evtlog": "the Event Log is Windows': servicemanager.LogMsg and logging go to the service's log "
                       "(servicehost logs NAME)",
        "win32evtlogutil": "the Event Log is Windows': servicemanager.LogMsg and logging go to the service's log "
                           "(servicehost logs NAME)",
        "win32process": "Win32 processes are Windows': use subprocess, os and signal (a pool: servicehost's "
                        "ProcessPool)",
        "win32ts": "Windows terminal sessions (SERVICE_CONTROL_SESSIONCHANGE) do not exist here",
        "pythoncom": "COM is Windows'",
        "win32com": "COM is Windows'",
    }

    def __getattr__(name: str) -> object:
        """``from servicehost.compat import win32pipe`` off Windows: an ImportError that says why."""
        if name in OUT_OF_SCOPE:
            raise ImportError(
                f"servicehost.compat has no {name} off Windows: {OUT_OF_SCOPE[name]} (docs/compat.md)",
                name=f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
