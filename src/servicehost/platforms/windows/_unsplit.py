r"""Windows: run under the Service Control Manager (SCM), install into it, log to the Event Log.

This is the ONLY module that imports ``win32*`` (pywin32), and it does so lazily through
:func:`pywin32`: importing it anywhere is cheap and safe, and its pure parts (the service's command
line, the virtual account's SID, the Event Log message file, the access evaluation) are tested on
every OS.

How a service process runs — venv-native, strategy "base interpreter + the venv's site-packages"
(no exe is moved, no DLL is copied, nothing goes into System32)::

    ImagePath = "C:\Python313\python.exe" -S -s -P -c "<BOOT>" "<prefix>" "<name>" run TARGET ... --manager windows

1. ``python.exe`` is the *base* interpreter (``sys._base_executable``): python3XY.dll and the VC
   runtime sit beside it, so the loader always finds them. (A venv's ``Scripts\python.exe`` is a
   launcher that runs the base interpreter as a *child* process, which the SCM cannot track.)
2. :data:`BOOT` sets ``sys.prefix`` to the installing environment (the venv) *before* ``site`` is
   imported, then runs ``site.main()``: the venv's site-packages and its .pth files (pywin32.pth puts
   pywin32_system32 on the DLL path; editable installs) are added exactly as the venv's own python
   adds them, and the base site-packages are not (as in a venv). ``-S -s -P``: no implicit site, no
   user site, no cwd (System32) on ``sys.path``.
3. :func:`service_main` connects to the SCM at once, on a thread, *before* the target is imported (a
   slow import can never cause error 1053), reports START_PENDING with rising checkpoints, applies
   the service's environment and working directory, then runs the ordinary ``servicehost run``.
4. :class:`WindowsPlatform` then translates: host states → SERVICE_* statuses (RUNNING only once every
   service is ready; START/STOP/PAUSE/CONTINUE_PENDING pumped with rising checkpoints and a wait hint
   for as long as they last); SCM controls → host calls (STOP/SHUTDOWN/PRESHUTDOWN → request_stop,
   PAUSE/CONTINUE → pause/resume, PARAMCHANGE → reload, 128–255 → control). The host's exit code
   becomes the service's exit status (:func:`scm_exit_status`): a failure is STOPPED with win32 exit
   code 1066 and the servicehost code as the service-specific code (so recovery runs), a requested
   stop never is.

Install (:class:`WindowsManager`) checks that the service account can reach the interpreter, the DLLs
and the code, registers the Event Log source with a generated message file (every ``logs`` event id
renders), sets recovery (restart after 1×, 6×, 12× the restart delay; reset after a day;
FAILURE_ACTIONS_FLAG so failure *exits* count too), preshutdown (the stop timeout), the account
(virtual account ``NT SERVICE\<name>`` by default) and its rights. See docs/windows.md.
"""

from __future__ import annotations

# Heavier stdlib modules (ctypes, hashlib, subprocess, ...) are imported where used: detect() imports
# this module on every OS, so it must stay cheap off Windows.
import importlib
import io
import logging
import os
import queue
import re
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from ... import logs
from ...errors import (
    ExitCode,
    PlatformUnavailable,
    ServiceHostError,
    StartupError,
    UsageError,
)
from ...host import Host
from ...lifecycle import HostState
from ...stopping import Deadline
from . import ENTRY
from ..base import InstallOptions, Manager, Secret, ServiceStatus, split_environment

log = logging.getLogger("servicehost.platforms.windows")

#: The -c program of every servicehost ImagePath (see the module docstring, step 2). No double
#: quotes in it, so it survives Windows command-line quoting unchanged.
BOOT = ("import sys;sys.prefix=sys.exec_prefix=sys.argv.pop(1);import site;site.main();"
        "from servicehost.platforms.windows import service_main;service_main()")
#: The wait hint sent with every *_PENDING status, and how often the pending status is re-sent with
#: the next checkpoint (Microsoft: about a tenth of the hint, at least 1 s). The SCM sees progress
#: at least once a second for as long as a start, pause or drain lasts.
WAIT_HINT_MS = 5000
PUMP_INTERVAL = 1.0
#: Extra time the SCM grants beyond ``stop_timeout`` at system shutdown (PRESHUTDOWN_INFO).
PRESHUTDOWN_MARGIN = 5.0
#: Seconds to wait for StartServiceCtrlDispatcher to call back (a hang guard: it takes milliseconds).
CONNECT_TIMEOUT = 30.0
ERROR_SERVICE_SPECIFIC_ERROR = 1066
ERROR_CALL_NOT_IMPLEMENTED = 120
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
ERROR_INVALID_LEVEL = 124
ERROR_ACCESS_DENIED = 5
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_EXISTS = 1073
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_DISABLED = 1058
ERROR_INVALID_SERVICE_CONTROL = 1052
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
SE_SERVICE_LOGON_RIGHT = "SeServiceLogonRight"
#: Accounts that have no password (built-in, virtual, managed service accounts).
BUILTIN_ACCOUNTS = {
    "localsystem": "S-1-5-18", ".\\localsystem": "S-1-5-18", "nt authority\\system": "S-1-5-18",
    "nt authority\\localservice": "S-1-5-19", "nt authority\\local service": "S-1-5-19",
    "nt authority\\networkservice": "S-1-5-20", "nt authority\\network service": "S-1-5-20",
}
#: Groups every service token holds: Everyone, Authenticated Users, Users, SERVICE, LOCAL.
SERVICE_GROUP_SIDS = ("S-1-1-0", "S-1-5-11", "S-1-5-32-545", "S-1-5-6", "S-1-2-0")
# File access masks (winnt.h): what "reachable" means for the account.
FILE_READ_DATA, FILE_WRITE_DATA, FILE_APPEND_DATA, FILE_EXECUTE = 0x1, 0x2, 0x4, 0x20
NEED_READ = FILE_READ_DATA | FILE_EXECUTE       # read a file / list a folder, and run / traverse it
NEED_WRITE = FILE_WRITE_DATA | FILE_APPEND_DATA
FILE_ALL_ACCESS, FILE_GENERIC_READ = 0x1F01FF, 0x120089
SYSTEM_SID, ADMINISTRATORS_SID = "S-1-5-18", "S-1-5-32-544"

_ALLOWED_PYWIN32 = ("win32serviceutil", "win32service", "win32event", "servicemanager")


# -- pywin32, imported lazily ----------------------------------------------------------------------
def pywin32(name: str) -> ModuleType:
    """Import a pywin32 module; PlatformUnavailable (saying what to install) if there is none."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PlatformUnavailable(
            f"pywin32 is needed for the Windows Service Control Manager and {name} cannot be imported "
            f"({exc}); install it into {sys.prefix}: {sys.executable} -m pip install pywin32") from None


def pywin32_module(name: str) -> ModuleType:
    """The real pywin32 module behind ``servicehost.compat.<name>`` on Windows."""
    if name not in _ALLOWED_PYWIN32:
        raise ValueError(f"servicehost.compat has no {name!r}; it has {', '.join(_ALLOWED_PYWIN32)}")
    return pywin32(name)


# -- pure parts: exit status, command line, accounts, access, the Event Log message file -----------
def scm_exit_status(code: int) -> tuple[int, int]:
    """``(win32ExitCode, ServiceSpecificExitCode)`` for a servicehost exit code.

    Success codes (OK, STOP_INCOMPLETE: this platform's ``ENTRY.exit_status``) report win32 exit code 0, so
    recovery never restarts a service an admin stopped; every other code reports
    ERROR_SERVICE_SPECIFIC_ERROR (1066) with the servicehost code, so failure actions run.
    """
    if code in ENTRY.exit_status.success:
        return 0, int(code)
    return ERROR_SERVICE_SPECIFIC_ERROR, int(code)


def service_command(command: Sequence[str], *, name: str, prefix: str, python: str) -> list[str]:
    """The argv of the service's ImagePath, from ``launch_command``'s ``[python, -m, servicehost, ...]``.

    ``python`` is the base interpreter, ``prefix`` the environment whose site-packages the service
    uses (a venv's root, or the base prefix itself).
    """
    if list(command[1:3]) != ["-m", "servicehost"] or len(command) < 4:
        raise UsageError(f"cannot run {list(command)!r} as a Windows service: expected PYTHON -m servicehost run ...")
    rest = list(command[3:])
    if "--manager" in rest:
        at = rest.index("--manager")
        del rest[at:at + 2]
    return [python, "-S", "-s", "-P", "-c", BOOT, prefix, name, *rest, "--manager", "windows"]


def command_line(argv: Sequence[str]) -> str:
    """Quote an argv as one Windows command line (CommandLineToArgvW parses it back)."""
    import subprocess

    return subprocess.list2cmdline(list(argv))


def virtual_account(name: str) -> str:
    return f"NT SERVICE\\{name}"


def virtual_account_sid(name: str) -> str:
    """The SID of ``NT SERVICE\\<name>``: S-1-5-80- and the SHA-1 of the upper-cased UTF-16LE name.

    Computed, not looked up: the SCM knows the account only once the service exists.
    """
    import hashlib

    digest = hashlib.sha1(name.upper().encode("utf-16-le")).digest()
    return "S-1-5-80-" + "-".join(str(n) for n in struct.unpack("<5I", digest))


def needs_password(account: str) -> bool:
    """False for accounts that have no password: built-in, virtual (NT SERVICE\\x), managed (x$)."""
    lowered = account.lower()
    return not (lowered in BUILTIN_ACCOUNTS or lowered.startswith("nt service\\") or lowered.endswith("$"))


@dataclass(frozen=True)
class Ace:
    """One access control entry, reduced to what an access check needs."""

    allow: bool
    mask: int
    sid: str
    inherit_only: bool = False


def granted_access(aces: Sequence[Ace] | None, sids: Iterable[str]) -> int:
    """The access bits a DACL grants a token holding ``sids`` (Windows' in-order evaluation:
    a bit denied before it is allowed stays denied). ``None`` is a NULL DACL: everything."""
    if aces is None:
        return 0xFFFFFFFF
    held = set(sids)
    allowed = denied = 0
    for ace in aces:
        if ace.inherit_only or ace.sid not in held:
            continue
        if ace.allow:
            allowed |= ace.mask & ~denied
        else:
            denied |= ace.mask & ~allowed
    return allowed


def secret_aces(account_sid: str) -> list[Ace]:
    """The whole DACL of a service's secret copies (set protected: nothing inherited): SYSTEM and
    Administrators full control, the service's own account (its SID) read, nobody else anything."""
    aces = [Ace(True, FILE_ALL_ACCESS, SYSTEM_SID), Ace(True, FILE_ALL_ACCESS, ADMINISTRATORS_SID)]
    if account_sid not in (SYSTEM_SID, ADMINISTRATORS_SID):
        aces.append(Ace(True, FILE_GENERIC_READ, account_sid))
    return aces


MESSAGE_TEXT = "%1\r\n"


def message_table(ids: Iterable[int], text: str = MESSAGE_TEXT) -> bytes:
    """A binary MESSAGE_RESOURCE_DATA: every id → ``text`` (UTF-16), one block per run of ids."""
    ordered = sorted(set(ids))
    blocks: list[list[int]] = []
    for event_id in ordered:
        if blocks and event_id == blocks[-1][-1] + 1:
            blocks[-1].append(event_id)
        else:
            blocks.append([event_id])
    encoded = (text + "\0").encode("utf-16-le")
    encoded += b"\0" * (-len(encoded) % 4)
    entry = struct.pack("<HH", 4 + len(encoded), 1) + encoded  # Length, Flags=MESSAGE_RESOURCE_UNICODE
    offset = 4 + 12 * len(blocks)
    header, body = [struct.pack("<I", len(blocks))], []
    for block in blocks:
        header.append(struct.pack("<III", block[0], block[-1], offset))
        body.append(entry * len(block))
        offset += len(entry) * len(block)
    return b"".join(header + body)


def resource_dll(table: bytes) -> bytes:
    """A resource-only PE32+ DLL holding ``table`` as RT_MESSAGETABLE 1 (language neutral): the
    EventMessageFile Event Viewer and FormatMessage load (as a data file) to render an event."""
    rt_messagetable, section_rva, file_align, section_align = 11, 0x1000, 0x200, 0x1000

    def directory(entry_id: int, target: int) -> bytes:
        return struct.pack("<IIHHHH", 0, 0, 0, 0, 0, 1) + struct.pack("<II", entry_id, target)

    # .rsrc: three one-entry directories (type → name → language), a data entry, then the table.
    data_offset = 3 * 24 + 16
    rsrc = (directory(rt_messagetable, 0x80000000 | 24) + directory(1, 0x80000000 | 48)
            + directory(0, 72) + struct.pack("<IIII", section_rva + data_offset, len(table), 0, 0) + table)
    raw_size = -(-len(rsrc) // file_align) * file_align
    image_size = section_rva + -(-len(rsrc) // section_align) * section_align
    dos = b"MZ" + b"\0" * 58 + struct.pack("<I", 0x40)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, 0x2022)  # AMD64, DLL | executable | large addr
    optional = struct.pack(
        "<HBBIIIII", 0x20B, 14, 0, 0, raw_size, 0, 0, 0,  # PE32+, no code, no entry point
    ) + struct.pack(
        "<QIIHHHHHHIIIIHHQQQQII", 0x180000000, section_align, file_align, 6, 0, 0, 0, 6, 0, 0,
        image_size, file_align, 0, 2, 0x0100, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    )
    directories = [(0, 0)] * 16
    directories[2] = (section_rva, len(rsrc))  # IMAGE_DIRECTORY_ENTRY_RESOURCE
    optional += b"".join(struct.pack("<II", *d) for d in directories)
    section = struct.pack("<8sIIIIIIHHI", b".rsrc", len(rsrc), section_rva, raw_size, file_align, 0, 0, 0, 0,
                          0x40000040)  # initialized data, readable
    headers = dos + b"PE\0\0" + coff + optional + section
    return headers + b"\0" * (file_align - len(headers)) + rsrc + b"\0" * (raw_size - len(rsrc))


def event_ids() -> list[int]:
    """Every id the Event Log handler writes: each named ``logs`` event, and 0 for records of
    the service's own code."""
    return sorted({0, *logs.EVENTS})


def service_data_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """``%ProgramData%\\servicehost\\<name>``: where install puts the Event Log message file."""
    env = os.environ if env is None else env
    return Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / "servicehost" / name


def credentials_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """``%ProgramData%\\servicehost\\credentials\\<name>``: copies of the service's ``--env NAME=@file``
    secrets, each readable by SYSTEM, Administrators and the service's account only
    (:func:`secret_aces`); the service gets ``NAME_FILE`` = the copy's path. Outside the state
    directory, whose inheritable grants must not reach it."""
    env = os.environ if env is None else env
    return Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / "servicehost" / "credentials" / name


# -- the service process: stdio, Event Log, status reports, controls --------------------------------
class ServiceStdio(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a service: never ``None``, never blocks, never raises.

    A service has no console (the streams are ``None``) or a pipe nobody reads (a print blocks once
    its small buffer fills). Until the host runs, text is kept (the last 64 KiB) so a failed start
    can say why; then each line becomes a log record (event 5312/5313), which the Event Log and the
    log file receive. A record that fails while being written is dropped, not re-entered.
    """

    KEEP = 64 * 1024

    def __init__(self, event: logs.LogEvent) -> None:
        super().__init__()
        self._event = event
        self._pending = ""
        self._kept = ""
        self._logging = False
        self._lock = threading.Lock()
        self._busy = threading.local()
        self._log = logging.getLogger("servicehost.stdio")

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:  # type: ignore[override]
        text = str(text)
        with self._lock:
            if not self._logging:
                self._kept = (self._kept + text)[-self.KEEP:]
                return len(text)
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if getattr(self._busy, "on", False) or not line.strip():
            return
        self._busy.on = True
        try:
            self._event(self._log, line.rstrip("\r"))
        finally:
            self._busy.on = False

    def start_logging(self, replay: bool = True) -> None:
        """From now on each line is a log record; what was kept is logged first (``replay``)."""
        with self._lock:
            kept, self._kept, self._logging = self._kept, "", True
        if replay:
            self.write(kept)

    def kept(self) -> str:
        with self._lock:
            return self._kept


class EventLogHandler(logging.Handler):
    """Logging records → the Application log, under the service's own source, with the record's
    event id (``logs`` events; 0 for the service's own records). Never raises into the caller."""

    MAX_CHARS = 31000  # ReportEvent's limit for one string is 31,839 characters

    def __init__(self, source: str, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._evtlog = pywin32("win32evtlog")
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


class _StatusReporter:
    """SetServiceStatus for one service. A pending status is re-sent every PUMP_INTERVAL with the
    next checkpoint, so the SCM sees progress for as long as a start, pause or drain lasts."""

    def __init__(self, ssh: Any, accepted: int) -> None:
        self._ws = pywin32("win32service")
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


_SESSION: _ScmSession | None = None  # the process's one SCM connection (one dispatcher per process)


class _ScmSession:
    """This process's connection to the SCM: the dispatcher thread, the ServiceFramework instance
    the SCM created, the status reporter, and the controls it sends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = threading.Event()  # ServiceMain ran, or the dispatcher failed
        self.error: str = ""                 # why there is no SCM connection
        self.start_args: tuple[str, ...] = ()
        self.status: _StatusReporter | None = None
        self.host: Host | None = None
        self._done = threading.Event()
        self._ops: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._dispatch, name="servicehost-scm-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float = CONNECT_TIMEOUT) -> bool:
        if not self.connected.wait(timeout):
            self.error = self.error or f"no call from the SCM within {timeout:g}s"
        return self.status is not None

    def _dispatch(self) -> None:
        servicemanager = pywin32("servicemanager")
        try:
            servicemanager.Initialize(self.name, message_files(self.name))
            servicemanager.PrepareToHostSingle(_framework_class(self))
            servicemanager.StartServiceCtrlDispatcher()  # blocks until the service reports STOPPED
        except Exception as exc:  # pywintypes.error (1063: a console), or startup_error: no SCM
            winerror = getattr(exc, "winerror", None)
            self.error = ("started from a console, not by the SCM" if winerror == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT
                          else f"StartServiceCtrlDispatcher failed: {exc}")
        finally:
            self.connected.set()

    # -- called by the SCM (ServiceMain thread, control dispatcher thread) ----------------------------
    def attach(self, framework: Any, args: Sequence[str]) -> None:
        ws = pywin32("win32service")
        accepted = (ws.SERVICE_ACCEPT_STOP | ws.SERVICE_ACCEPT_SHUTDOWN | ws.SERVICE_ACCEPT_PRESHUTDOWN
                    | ws.SERVICE_ACCEPT_PAUSE_CONTINUE | ws.SERVICE_ACCEPT_PARAMCHANGE)
        self.start_args = tuple(args[1:])
        self.status = _StatusReporter(framework.ssh, accepted)

    def service_thread(self) -> None:
        """``SvcRun``: START_PENDING from here on, then the SCM's service thread waits while the
        main thread runs the host. Only now may the host run: pywin32 reports START_PENDING
        (checkpoint 0) between the instance's ``__init__`` and ``SvcRun``, which would otherwise
        overwrite a RUNNING the host reported first."""
        assert self.status is not None
        self.status.report(pywin32("win32service").SERVICE_START_PENDING)
        self.connected.set()
        self._done.wait()

    def on_control(self, control: int, event_type: int, data: Any) -> int:
        """The control handler: must return at once, so hooks run on the control thread."""
        ws = pywin32("win32service")
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
        ws = pywin32("win32service")
        assert self.status is not None
        status = self.status
        states = {
            HostState.STARTING: ws.SERVICE_START_PENDING, HostState.RUNNING: ws.SERVICE_RUNNING,
            HostState.PAUSING: ws.SERVICE_PAUSE_PENDING, HostState.PAUSED: ws.SERVICE_PAUSED,
            HostState.RESUMING: ws.SERVICE_CONTINUE_PENDING, HostState.STOPPING: ws.SERVICE_STOP_PENDING,
            HostState.STOPPED: ws.SERVICE_STOP_PENDING, HostState.FAILED: ws.SERVICE_STOP_PENDING,
        }
        host.lifecycle.subscribe(lambda old, new: status.report(states[new]))
        for service in host.services:
            service.start_args = self.start_args  # docs/windows.md
        logs.scm_connected(log, self.name, list(self.start_args))
        self.host = host
        threading.Thread(target=self._run_controls, name="servicehost-scm-control", daemon=True).start()
        code = ExitCode.CRASH
        try:
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
                if self.status is not None and self.host is not None and not self.host.state.is_final:
                    self.status.again()

    def finish(self, code: int) -> None:
        """Report STOPPED with ``code``. A non-zero code ends the process here: pywin32 would
        otherwise report STOPPED again, with exit code 0, once ``SvcRun`` returns."""
        win32_exit, service_exit = scm_exit_status(code)
        logs.scm_stopped(log, win32_exit, service_exit)
        if code != ExitCode.OK and self.status is not None:
            ws = pywin32("win32service")
            self.status.report(ws.SERVICE_STOPPED, win32_exit=win32_exit, service_exit=service_exit)
            logs.flush()
            os._exit(int(code))
        if self.status is not None:
            self.status.close()
        self._done.set()  # SvcRun returns; pywin32 reports STOPPED, exit code 0
        self._thread.join(CONNECT_TIMEOUT)


def _framework_class(session: _ScmSession) -> type:
    """The pywin32 ServiceFramework the SCM instantiates for this process's service."""
    win32serviceutil = pywin32("win32serviceutil")

    class HostedService(win32serviceutil.ServiceFramework):  # type: ignore[misc,name-defined]
        _svc_name_ = session.name
        _svc_display_name_ = session.name

        def __init__(self, args: Sequence[str]) -> None:
            super().__init__(args)  # registers ServiceCtrlHandlerEx and the event source
            session.attach(self, args)

        def ServiceCtrlHandlerEx(self, control: int, event_type: int, data: Any) -> int:
            return session.on_control(control, event_type, data)

        def SvcRun(self) -> None:
            session.service_thread()

    return HostedService


def message_files(name: str) -> str:
    """EventMessageFile of the service's source: the generated file (servicehost's ids), then
    pywin32's servicemanager (the PYS_* ids its own host code logs)."""
    files = [str(service_data_dir(name) / "messages.dll")]
    try:
        files.append(str(pywin32("servicemanager").__file__))
    except PlatformUnavailable:
        pass
    return ";".join(files)


def _apply_parameters(name: str) -> None:
    """The service's environment and working directory, from its registry key (the SCM applies
    ``Environment`` itself on Windows, Wine does not; applying it again changes nothing)."""
    import winreg

    key_path = rf"SYSTEM\CurrentControlSet\Services\{name}"
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key_path) as key:
            try:
                pairs = winreg.QueryValueEx(key, "Environment")[0]
            except FileNotFoundError:
                pairs = []
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key_path + r"\Parameters") as key:
            workdir = winreg.QueryValueEx(key, "WorkingDirectory")[0]
    except FileNotFoundError:
        return
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if sep and k:
            os.environ[k] = v
    if workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)


def _include_system_site_packages() -> None:
    """What a venv with ``include-system-site-packages = true`` adds after its own site-packages."""
    import configparser
    import site

    cfg = Path(sys.prefix) / "pyvenv.cfg"
    if sys.prefix == sys.base_prefix or not cfg.is_file():
        return
    parser = configparser.ConfigParser()
    parser.read_string("[venv]\n" + cfg.read_text(encoding="utf-8", errors="replace"))
    if parser.get("venv", "include-system-site-packages", fallback="false").strip().lower() == "true":
        for path in site.getsitepackages([sys.base_prefix]):
            site.addsitedir(path)


def service_main(argv: Sequence[str] | None = None) -> NoReturn:
    """The entry point of every servicehost ImagePath (after :data:`BOOT`): ``NAME run TARGET ...``."""
    from ... import cli

    args = list(sys.argv[1:] if argv is None else argv)
    name, rest = args[0], args[1:]
    _include_system_site_packages()
    stdout, stderr = ServiceStdio(logs.windows_stdout), ServiceStdio(logs.windows_stderr)
    sys.stdout, sys.stderr = stdout, stderr  # type: ignore[assignment]
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115  (the process's stdin)
    global _SESSION
    _SESSION = session = _ScmSession(name)
    session.start()  # connect now: the SCM waits at most 30 s for this (error 1053)
    _apply_parameters(name)
    try:
        code = cli.run_cli(rest)
    except BaseException:  # a bug below the CLI: still report it, and a failure exit
        import traceback

        traceback.print_exc()
        code = ExitCode.CRASH
    if session.host is None and session.wait_connected():
        # The host never ran (bad config, unknown target...): say why where admins look.
        reason = (stderr.kept() or stdout.kept()).strip() or f"exit code {code}"
        try:
            handler = EventLogHandler(name)
            logging.getLogger().addHandler(handler)
        except Exception as exc:  # no Event Log: the SCM still gets the exit code
            logs.notify_failed(log, exc)
        logs.scm_start_aborted(log, code, reason)
        session.finish(code or ExitCode.START_FAILURE)
    logs.flush()
    sys.exit(code)


class WindowsPlatform:
    """The Windows Service Control Manager, through pywin32."""

    name = "windows"

    def detect(self, env: Mapping[str, str]) -> str | None:
        if _SESSION is not None and _SESSION.status is not None:
            return f"started by the Windows Service Control Manager as {_SESSION.name}"
        return None

    def installable(self, env: Mapping[str, str]) -> str | None:
        if sys.platform == "win32":
            return "Windows: the Service Control Manager"
        return None

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Run ``host`` as the SCM's service (main thread); in a console, run it in the foreground."""
        from ..foreground import ForegroundPlatform

        session = _SESSION
        if not debug and sys.platform == "win32" and session is None:
            session = _ScmSession(host.name)  # ``servicehost run ... --manager windows`` by hand
            session.start()
        if debug or session is None or not session.wait_connected():
            _restore_console()
            if not debug:
                logs.scm_not_a_service(log, session.error if session else "not Windows")
            return ForegroundPlatform().run(host, debug=debug)
        self._prepare_process(session.name)
        return session.serve(host)

    @staticmethod
    def _prepare_process(source: str) -> None:
        """Safe stdio, the Event Log handler (``source``: the service's name), a real interpreter
        for spawned processes."""
        import multiprocessing

        root = logging.getLogger()
        for stream in (sys.stdout, sys.stderr):
            console = [h for h in root.handlers
                       if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream]
            for handler in console:  # a console handler writing into stdio would loop
                root.removeHandler(handler)
            if isinstance(stream, ServiceStdio):
                stream.start_logging(replay=not console)  # what a console handler wrote is in the log already
        if not isinstance(sys.stdout, ServiceStdio):
            sys.stdout = ServiceStdio(logs.windows_stdout)  # type: ignore[assignment]
            sys.stdout.start_logging()  # type: ignore[attr-defined]
        if not isinstance(sys.stderr, ServiceStdio):
            sys.stderr = ServiceStdio(logs.windows_stderr)  # type: ignore[assignment]
            sys.stderr.start_logging()  # type: ignore[attr-defined]
        try:
            event_log = EventLogHandler(source)
            event_log.addFilter(_EventIdFilter())
            root.addHandler(event_log)
        except Exception as exc:  # the log file still has everything
            logs.notify_failed(log, exc)
        # CPython spawns children with sys.executable; under pythonservice.exe that would be a
        # python.exe in sys.exec_prefix, which a venv lacks. Ours is the base python.exe: real.
        executable = sys.executable
        if Path(executable).name.lower() not in ("python.exe", "pythonw.exe", "python_d.exe"):
            executable = str(Path(sys.base_exec_prefix) / "python.exe")
        multiprocessing.set_executable(executable)

    def manager(self) -> Manager:
        if sys.platform != "win32":
            raise PlatformUnavailable("the Windows Service Control Manager exists only on Windows")
        pywin32("win32service")
        return WindowsManager()


def _restore_console() -> None:
    """Run by hand from a console after all: give back the real stdout/stderr (what was written
    meanwhile included), and point console log handlers at them again."""
    for name, original in (("stdout", sys.__stdout__), ("stderr", sys.__stderr__)):
        current = getattr(sys, name)
        if not isinstance(current, ServiceStdio) or original is None:
            continue
        setattr(sys, name, original)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is current:
                handler.setStream(original)
        original.write(current.kept())


class _EventIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "event_id"):
            record.event_id = 0
        return True


# -- the manager: install, update, remove, start, stop, status, controls ---------------------------
STATE_NAMES = {1: "stopped", 2: "starting", 3: "stopping", 4: "running", 5: "resuming", 6: "pausing", 7: "paused"}
START_TYPES = {"auto": 2, "delayed": 2, "manual": 3, "disabled": 4}


class ServiceControlError(UsageError):
    """The SCM refused a request; the message says what to do (exit code 2). ``winerror``: the
    Windows error code, when there is one."""

    def __init__(self, message: str, winerror: int | None = None) -> None:
        super().__init__(message)
        self.winerror = winerror


@dataclass
class InstallPlan:
    """Everything install/update computes before it touches the SCM."""

    name: str
    image: list[str]
    account: str
    account_sids: tuple[str, ...]
    start_type: int
    state_dir: Path
    working_directory: Path
    check: list[tuple[Path, int]] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    """The service key's ``Environment`` entries: plain ``K=V`` and ``NAME_FILE=<copy>`` (never a secret)."""
    secrets: list[tuple[Secret, bytes]] = field(default_factory=list, repr=False)
    """``--env NAME=@file``: read before anything is registered, copied by :meth:`WindowsManager._store_secrets`."""


class WindowsManager:
    """Installs and controls services through the SCM. Needs an elevated (Administrator) process
    for install/update/remove; status works for everyone. Every wait polls the SCM every 50 ms."""

    name = "windows"
    POLL = 0.05

    def __init__(self, *, read_password: Callable[[str], str] | None = None) -> None:
        self._ws = pywin32("win32service")
        self._win_error: type[BaseException] = pywin32("pywintypes").error  # what every pywin32 call raises
        self._read_password = read_password or _read_password

    # -- install / update / remove ------------------------------------------------------------------
    def install(self, options: InstallOptions, command: list[str]) -> None:
        ws = self._ws
        if self._exists(options.name):
            logs.windows_already_installed(log, options.name)
            self.update(options, command)
            return
        plan = self._plan(options, command)
        password = self._password(plan.account)
        with self._scm() as scm:
            try:
                handle = ws.CreateService(
                    scm, options.name, options.display_name or options.name, ws.SERVICE_ALL_ACCESS,
                    ws.SERVICE_WIN32_OWN_PROCESS, plan.start_type, ws.SERVICE_ERROR_NORMAL,
                    command_line(plan.image), None, 0, list(options.dependencies) or None, plan.account, password)
            except self._win_error as exc:
                raise self._error(exc, f"install {options.name}") from None
            finally:
                password = None
            try:
                self._configure(handle, options, plan)
            except BaseException:
                ws.DeleteService(handle)
                self._remove_event_source(options.name)
                _remove_tree(credentials_dir(options.name))
                raise
            finally:
                ws.CloseServiceHandle(handle)
        logs.windows_installed(log, options.name, command_line(plan.image))

    def update(self, options: InstallOptions, command: list[str]) -> None:
        ws = self._ws
        with self._service(options.name) as handle:
            current = ws.QueryServiceConfig(handle)[7] or "LocalSystem"
        plan = self._plan(options, command, account=options.account or current)
        account = plan.account if options.account else None  # no --username: keep the account
        password = self._password(account) if account else None
        with self._service(options.name) as handle:
            try:
                ws.ChangeServiceConfig(
                    handle, ws.SERVICE_WIN32_OWN_PROCESS, plan.start_type, ws.SERVICE_ERROR_NORMAL,
                    command_line(plan.image), None, 0, list(options.dependencies) or None, account, password,
                    options.display_name or options.name)
            except self._win_error as exc:
                raise self._error(exc, f"update {options.name}") from None
            finally:
                password = None
            self._configure(handle, options, plan)
        logs.windows_updated(log, options.name, command_line(plan.image))

    def remove(self, name: str, *, purge: bool = False) -> None:
        ws = self._ws
        state_dir = self._parameter(name, "StateDirectory")
        self.stop(name)
        with self._service(name) as handle:
            try:
                ws.DeleteService(handle)
            except self._win_error as exc:
                raise self._error(exc, f"remove {name}") from None
        self._remove_event_source(name)
        _remove_tree(credentials_dir(name))  # its secrets go with it, purge or not
        data_dir = service_data_dir(name)
        (data_dir / "messages.dll").unlink(missing_ok=True)
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

    def _plan(self, options: InstallOptions, command: list[str], account: str = "") -> InstallPlan:
        python = _base_python()
        image = service_command(command, name=options.name, prefix=sys.prefix, python=python)
        account = account or options.account or virtual_account(options.name)
        state_dir = Path(options.state_dir) if options.state_dir else service_data_dir(options.name)
        workdir = Path(options.working_directory) if options.working_directory else state_dir
        plan = InstallPlan(options.name, image, account, self._account_sids(account, options.name),
                           START_TYPES[options.start_mode], state_dir, workdir)
        plan.check = [(path, NEED_READ) for path in self._code_paths(image, options)]
        self._check_reachable(plan)
        plain, secrets = split_environment(options.environment)
        copies = credentials_dir(options.name)
        plan.environment = [f"{k}={v}" for k, v in plain] + [f"{s.variable}={copies / s.key}" for s in secrets]
        plan.secrets = [(secret, secret.read()) for secret in secrets]  # ConfigError (exit 2) before any change
        return plan

    def _configure(self, handle: Any, options: InstallOptions, plan: InstallPlan) -> None:
        ws = self._ws
        name = options.name
        ws.ChangeServiceConfig2(handle, ws.SERVICE_CONFIG_DESCRIPTION, options.description or "")
        if options.start_mode == "delayed":
            if not self._config2(handle, ws.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, True, "delayed auto-start",
                                 "", required=True):
                raise ServiceControlError(
                    f"{name}: this Service Control Manager does not implement delayed auto-start "
                    f"(ChangeServiceConfig2 DELAYED_AUTO_START_INFO: error {ERROR_INVALID_LEVEL}); "
                    "install with --start auto instead")
        elif options.start_mode == "auto":  # clear a delay an earlier install set; nothing to clear if unsupported
            self._config2(handle, ws.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, False, "delayed auto-start", "",
                          required=True)
        delays = [options.restart_delay * k for k in (1, 6, 12)] if options.restart else []
        actions = {"ResetPeriod": 86400 if options.restart else 0, "RebootMsg": None, "Command": None,
                   "Actions": [(ws.SC_ACTION_RESTART, int(d * 1000)) for d in delays]}
        self._config2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS, actions, "failure actions",
                      "a crashed service is not restarted")
        if options.restart:
            try:
                ws.QueryServiceConfig2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS)
            except self._win_error as exc:
                logs.windows_manager_lacks(log, name, "failure actions", getattr(exc, "winerror", 0),
                                           "the restart policy was not stored")
        self._config2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, bool(options.restart),
                      "FAILURE_ACTIONS_FLAG", "recovery runs after crashes only, not after failure exits")
        self._config2(handle, ws.SERVICE_CONFIG_PRESHUTDOWN_INFO,
                      int((options.stop_timeout + PRESHUTDOWN_MARGIN) * 1000), "preshutdown",
                      "at system shutdown the SCM's own (short) shutdown timeout applies")
        if plan.account.lower().startswith("nt service\\"):
            self._config2(handle, ws.SERVICE_CONFIG_SERVICE_SID_INFO, ws.SERVICE_SID_TYPE_UNRESTRICTED,
                          "service SIDs", "ACLs granted to the virtual account may not apply")
        self._store_secrets(plan)
        self._write_parameters(name, options, plan)
        self._register_event_source(name)
        if needs_password(plan.account):
            self._grant_logon_right(plan)
        self._prepare_state_dir(plan)

    def _config2(self, handle: Any, level: int, value: Any, what: str, consequence: str,
                 required: bool = False) -> bool:
        """ChangeServiceConfig2; a level this SCM does not implement (error 124) is a warning unless
        ``required`` (then False is returned and the caller refuses)."""
        try:
            self._ws.ChangeServiceConfig2(handle, level, value)
        except self._win_error as exc:
            if getattr(exc, "winerror", None) != ERROR_INVALID_LEVEL:
                raise self._error(exc, f"set {what}") from None
            if required:
                return False
            logs.windows_manager_lacks(log, self._ws.QueryServiceConfig(handle)[8], what, ERROR_INVALID_LEVEL,
                                       consequence)  # [8]: the display name
        return True

    def _write_parameters(self, name: str, options: InstallOptions, plan: InstallPlan) -> None:
        import winreg

        base = rf"SYSTEM\CurrentControlSet\Services\{name}"
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, base, 0, winreg.KEY_ALL_ACCESS) as key:
            if plan.environment:
                winreg.SetValueEx(key, "Environment", 0, winreg.REG_MULTI_SZ, plan.environment)
            else:
                try:
                    winreg.DeleteValue(key, "Environment")
                except FileNotFoundError:
                    pass
        with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, base + r"\Parameters", 0, winreg.KEY_ALL_ACCESS) as key:
            winreg.SetValueEx(key, "WorkingDirectory", 0, winreg.REG_SZ, str(plan.working_directory))
            winreg.SetValueEx(key, "StateDirectory", 0, winreg.REG_SZ, str(plan.state_dir))

    def _store_secrets(self, plan: InstallPlan) -> None:
        """Make ``credentials\\<name>`` hold exactly the plan's secrets: the folder's DACL is set
        (protected) before anything is written into it, each copy gets the same DACL and replaces
        the old one atomically (MoveFileEx REPLACE_EXISTING)."""
        own = credentials_dir(plan.name)
        if not plan.secrets:
            _remove_tree(own)
            return
        own.mkdir(parents=True, exist_ok=True)
        self._protect(own, plan, folder=True)
        for secret, data in plan.secrets:
            tmp = own / f".{secret.key}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                self._protect(tmp, plan, folder=False)
                os.replace(tmp, own / secret.key)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        keep = {secret.key for secret, _ in plan.secrets}
        for old in own.iterdir():  # secrets no longer given, and leftovers of an interrupted write
            if old.name not in keep:
                old.unlink()

    def _protect(self, path: Path, plan: InstallPlan, *, folder: bool) -> None:
        """Set :func:`secret_aces` as the whole, protected DACL of ``path`` (inherited by what a
        folder will hold)."""
        security = pywin32("win32security")
        inherit = security.OBJECT_INHERIT_ACE | security.CONTAINER_INHERIT_ACE if folder else 0
        dacl = security.ACL()
        for ace in secret_aces(plan.account_sids[0]):
            dacl.AddAccessAllowedAceEx(security.ACL_REVISION_DS, inherit, ace.mask,
                                       security.ConvertStringSidToSid(ace.sid))
        try:
            security.SetNamedSecurityInfo(
                str(path), security.SE_FILE_OBJECT,
                security.DACL_SECURITY_INFORMATION | security.PROTECTED_DACL_SECURITY_INFORMATION,
                None, None, dacl, None)
        except self._win_error as exc:
            raise self._error(exc, f"restrict {path} to SYSTEM, Administrators and {plan.account} "
                                   "(--env NAME=@file)") from None

    def _parameter(self, name: str, value: str) -> str:
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,
                                rf"SYSTEM\CurrentControlSet\Services\{name}\Parameters") as key:
                return str(winreg.QueryValueEx(key, value)[0])
        except OSError:
            return ""

    def _register_event_source(self, name: str) -> None:
        data_dir = service_data_dir(name)
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "messages.dll").write_bytes(resource_dll(message_table(event_ids())))
        evtlogutil = pywin32("win32evtlogutil")
        evtlog = pywin32("win32evtlog")
        evtlogutil.AddSourceToRegistry(
            name, message_files(name), "Application",
            evtlog.EVENTLOG_ERROR_TYPE | evtlog.EVENTLOG_WARNING_TYPE | evtlog.EVENTLOG_INFORMATION_TYPE)

    def _remove_event_source(self, name: str) -> None:
        try:
            pywin32("win32evtlogutil").RemoveSourceFromRegistry(name, "Application")
        except self._win_error as exc:  # no source registered (a failed install): nothing to remove
            logs.notify_failed(log, exc)

    def _grant_logon_right(self, plan: InstallPlan) -> None:
        security = pywin32("win32security")
        try:
            policy = security.LsaOpenPolicy(None, security.POLICY_ALL_ACCESS)
            try:
                sid = security.ConvertStringSidToSid(plan.account_sids[0])
                security.LsaAddAccountRights(policy, sid, [SE_SERVICE_LOGON_RIGHT])
            finally:
                security.LsaClose(policy)
        except self._win_error as exc:
            raise self._error(exc, f"grant {plan.account} the right to log on as a service") from None

    def _prepare_state_dir(self, plan: InstallPlan) -> None:
        """Create the state and working directories and let the account modify them."""
        security = pywin32("win32security")
        ntsecuritycon = pywin32("ntsecuritycon")
        sid = security.ConvertStringSidToSid(plan.account_sids[0])
        for path in dict.fromkeys([plan.state_dir, plan.working_directory]):
            path.mkdir(parents=True, exist_ok=True)
            if plan.account_sids[0] == "S-1-5-18":
                continue  # LocalSystem can already
            try:
                sd = security.GetNamedSecurityInfo(str(path), security.SE_FILE_OBJECT,
                                                   security.DACL_SECURITY_INFORMATION)
                dacl = sd.GetSecurityDescriptorDacl() or security.ACL()
                dacl.AddAccessAllowedAceEx(
                    security.ACL_REVISION_DS, security.OBJECT_INHERIT_ACE | security.CONTAINER_INHERIT_ACE,
                    ntsecuritycon.FILE_GENERIC_READ | ntsecuritycon.FILE_GENERIC_WRITE
                    | ntsecuritycon.FILE_GENERIC_EXECUTE | ntsecuritycon.DELETE, sid)
                security.SetNamedSecurityInfo(str(path), security.SE_FILE_OBJECT,
                                              security.DACL_SECURITY_INFORMATION, None, None, dacl, None)
            except self._win_error as exc:
                raise self._error(exc, f"let {plan.account} write {path}") from None

    # -- reachability -------------------------------------------------------------------------------
    def _account_sids(self, account: str, name: str) -> tuple[str, ...]:
        lowered = account.lower()
        if lowered in BUILTIN_ACCOUNTS:
            own = BUILTIN_ACCOUNTS[lowered]
            return (own, "S-1-5-32-544", *SERVICE_GROUP_SIDS) if own == "S-1-5-18" else (own, *SERVICE_GROUP_SIDS)
        if lowered.startswith("nt service\\"):
            return (virtual_account_sid(account.split("\\", 1)[1]), "S-1-5-80-0", *SERVICE_GROUP_SIDS)
        security = pywin32("win32security")
        try:
            sid = security.LookupAccountName(None, account)[0]
        except self._win_error as exc:
            raise ServiceControlError(f"account {account!r} not found ({_strerror(exc)}): give DOMAIN\\user or .\\user") from None
        sids = [security.ConvertSidToStringSid(sid), *SERVICE_GROUP_SIDS]
        try:
            net = pywin32("win32net")
            user = account.split("\\")[-1]
            for group in net.NetUserGetLocalGroups(None, user):
                sids.append(security.ConvertSidToStringSid(security.LookupAccountName(None, group)[0]))
        except self._win_error as exc:  # domain accounts: their groups are not known here
            logs.notify_failed(log, exc)
        return tuple(sids)

    def _code_paths(self, image: list[str], options: InstallOptions) -> list[Path]:
        import servicehost

        paths = [Path(image[0]), Path(image[0]).parent / f"python{sys.version_info[0]}{sys.version_info[1]}.dll"]
        paths.append(Path(_module_file("pywintypes")))
        paths += [Path(servicehost.__file__).parent, Path(sys.prefix)]
        try:
            target = image[image.index("run") + 1]
        except (ValueError, IndexError):
            target = ""
        drive = target[:2] if re.match(r"[A-Za-z]:[\\/]", target) else ""
        file_part = drive + target[len(drive):].split(":")[0]
        if file_part.lower().endswith(".py"):
            paths += [Path(file_part), Path(file_part).parent]
        if options.config_file:
            paths.append(Path(options.config_file))
        if options.working_directory:
            paths.append(Path(options.working_directory))
        return [p for p in dict.fromkeys(paths) if str(p)]

    def _check_reachable(self, plan: InstallPlan) -> None:
        if plan.account_sids[0] == "S-1-5-18":
            return  # LocalSystem
        problems = []
        for path, need in plan.check:
            if not path.exists():
                problems.append(f"{path} does not exist (is everything installed into {sys.prefix}?)")
                continue
            granted = granted_access(self._dacl(path), plan.account_sids)
            if granted & need != need:
                flags = "(OI)(CI)RX" if path.is_dir() else "RX"
                problems.append(f"{plan.account} cannot read {path}: grant it with "
                                f"icacls \"{path}\" /grant \"{plan.account}:{flags}\", or install to a shared folder")
        if not problems:
            return
        text = f"{plan.name}: the service account cannot reach what the service needs: " + "; ".join(problems)
        if plan.account.lower().startswith("nt service\\") or plan.account.lower() in BUILTIN_ACCOUNTS:
            raise ServiceControlError(text)
        logs.windows_access_warning(log, text + " (its domain groups may grant it; not checked)")

    def _dacl(self, path: Path) -> list[Ace] | None:
        security = pywin32("win32security")
        sd = security.GetNamedSecurityInfo(str(path), security.SE_FILE_OBJECT, security.DACL_SECURITY_INFORMATION)
        dacl = sd.GetSecurityDescriptorDacl()
        if dacl is None:
            return None
        aces = []
        for i in range(dacl.GetAceCount()):
            (ace_type, flags), mask, sid = dacl.GetAce(i)[:3]
            if ace_type in (security.ACCESS_ALLOWED_ACE_TYPE, security.ACCESS_DENIED_ACE_TYPE):
                aces.append(Ace(ace_type == security.ACCESS_ALLOWED_ACE_TYPE, mask & 0xFFFFFFFF,
                                security.ConvertSidToStringSid(sid), bool(flags & security.INHERIT_ONLY_ACE)))
        return aces

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
                if getattr(exc, "winerror", None) != ERROR_SERVICE_ALREADY_RUNNING:
                    raise self._error(exc, f"start {name}") from None
            final = self._wait(handle, ws.SERVICE_RUNNING, wait, pending=ws.SERVICE_START_PENDING)
            if final["CurrentState"] == ws.SERVICE_STOPPED:
                code = _last_exit(final)
                raise StartupError(f"{name} stopped while starting (exit code {_exit_text(code, final)}); "
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
            if getattr(exc, "winerror", None) != ERROR_SERVICE_NOT_ACTIVE:
                raise self._error(exc, f"stop {name}") from None
        self._wait(handle, ws.SERVICE_STOPPED, wait, pending=ws.SERVICE_STOP_PENDING)

    def restart(self, name: str, *, wait: float | None = None) -> None:
        self.stop(name, wait=wait)
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
                raise self._error(exc, f"{what} {name}") from None

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
        if state == "stopped" and st["Win32ExitCode"] != 0:
            state = "failed"
        pid = st["ProcessId"] or None
        start_mode = {2: "delayed" if delayed else "auto", 3: "manual", 4: "disabled"}.get(config[1], str(config[1]))
        detail = {"display name": config[8], "start mode": start_mode, "account": config[7] or "LocalSystem",
                  "win32 exit code": str(st["Win32ExitCode"])}
        if st["CurrentState"] in (2, 3, 5, 6):
            detail["checkpoint"] = f"{st['CheckPoint']} (wait hint {st['WaitHint']} ms)"
        return ServiceStatus(name, self.name, state, pid=pid, uptime=_uptime(pid), restarts=None,
                             last_exit=_last_exit(st), detail=detail)

    def logs(self, name: str, size: int = 16384) -> str:
        """The end of the service's log: its records in the Application log (the SCM's log), newest
        last; where the Event Log cannot be read back (Wine), the end of its log file."""
        evtlog = pywin32("win32evtlog")
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
        state_dir = self._parameter(name, "StateDirectory")
        files = sorted(Path(state_dir, "logs").glob("*.log"), key=lambda p: p.stat().st_mtime) if state_dir else []
        if not files:
            raise ServiceControlError(f"no log of {name} found: neither Event Log records nor {state_dir}\\logs\\*.log")
        with open(files[-1], "rb") as fh:
            fh.seek(max(0, files[-1].stat().st_size - size))
            return fh.read().decode("utf-8", "replace")

    def _wait(self, handle: Any, target: int, wait: float | None, *, pending: int | None) -> dict[str, Any]:
        """Poll until ``target`` (or STOPPED). ``wait=None``: as long as the service shows progress
        (a new state or checkpoint within its wait hint, as Microsoft's samples do); a number: at most
        that many seconds; 0: do not wait."""
        ws = self._ws
        st = ws.QueryServiceStatusEx(handle)
        if wait == 0:
            return st  # type: ignore[no-any-return]
        deadline = Deadline.after(wait)
        progress_at, seen = time.monotonic(), (st["CurrentState"], st["CheckPoint"])
        while st["CurrentState"] != target and not (st["CurrentState"] == ws.SERVICE_STOPPED and pending is not None):
            if deadline.expired:
                raise ServiceControlError(f"gave up after {wait:g}s: the service is "
                                          f"{STATE_NAMES.get(st['CurrentState'], st['CurrentState'])}")
            now = time.monotonic()
            if (st["CurrentState"], st["CheckPoint"]) != seen:
                progress_at, seen = now, (st["CurrentState"], st["CheckPoint"])
            elif wait is None and now - progress_at > max(st["WaitHint"] / 1000.0, 10.0):
                raise ServiceControlError(
                    f"the service shows no progress: {STATE_NAMES.get(st['CurrentState'])} at checkpoint "
                    f"{st['CheckPoint']} for {now - progress_at:.0f}s (its wait hint is {st['WaitHint']} ms)")
            time.sleep(self.POLL)
            st = ws.QueryServiceStatusEx(handle)
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

    def _scm(self) -> _Handle:
        ws = self._ws
        try:
            return _Handle(ws, ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS))
        except self._win_error:
            try:
                return _Handle(ws, ws.OpenSCManager(None, None, ws.SC_MANAGER_CONNECT))
            except self._win_error as exc:
                raise self._error(exc, "open the Service Control Manager") from None

    def _service(self, name: str, access: int | None = None) -> _Handle:
        ws = self._ws
        with self._scm() as scm:
            try:
                return _Handle(ws, ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS if access is None else access))
            except self._win_error as exc:
                if access is None and getattr(exc, "winerror", None) == ERROR_ACCESS_DENIED:
                    return self._service(name, ws.SERVICE_QUERY_STATUS | ws.SERVICE_QUERY_CONFIG
                                         | ws.SERVICE_START | ws.SERVICE_STOP | ws.SERVICE_PAUSE_CONTINUE
                                         | ws.SERVICE_INTERROGATE | ws.SERVICE_USER_DEFINED_CONTROL
                                         | ws.SERVICE_ENUMERATE_DEPENDENTS)
                raise self._error(exc, f"open service {name}") from None

    @staticmethod
    def _error(exc: BaseException, doing: str) -> ServiceHostError:
        code = getattr(exc, "winerror", None)
        hints = {
            ERROR_ACCESS_DENIED: "run it from an elevated (Administrator) prompt",
            ERROR_SERVICE_DOES_NOT_EXIST: "the service does not exist: install it first",
            ERROR_SERVICE_DISABLED: "the service is disabled: update it with --start manual or auto",
            ERROR_SERVICE_NOT_ACTIVE: "the service is not running",
            ERROR_INVALID_SERVICE_CONTROL: "the service does not accept this control in its current state",
            ERROR_SERVICE_CANNOT_ACCEPT_CTRL: "the service cannot accept controls now (starting or stopping)",
            ERROR_SERVICE_EXISTS: "a service of that name exists already",
        }
        hint = hints.get(code or 0, "")
        return ServiceControlError(f"cannot {doing}: {_strerror(exc)}" + (f" — {hint}" if hint else ""), code)


class _Handle:
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
    import winreg

    depended_by: dict[str, list[str]] = {}
    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Services") as root:
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


def _remove_tree(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _strerror(exc: BaseException) -> str:
    code = getattr(exc, "winerror", None)
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{text} (error {code})" if code is not None else text


def _last_exit(st: Mapping[str, int]) -> int | None:
    if st["Win32ExitCode"] in (0, ERROR_SERVICE_SPECIFIC_ERROR):
        return st["ServiceSpecificExitCode"] if st["Win32ExitCode"] else 0
    return None


def _exit_text(code: int | None, st: Mapping[str, int]) -> str:
    if code is None:
        return f"win32 error {st['Win32ExitCode']}"
    try:
        return f"{code} ({ExitCode(code).name})"
    except ValueError:
        return str(code)


def _uptime(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        api, process, con = pywin32("win32api"), pywin32("win32process"), pywin32("win32con")
        handle = api.OpenProcess(con.PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        try:
            created = process.GetProcessTimes(handle)["CreationTime"]
        finally:
            api.CloseHandle(handle)
        return max(0.0, time.time() - created.timestamp())
    except Exception as exc:  # no access to the process: unknown
        logs.notify_failed(log, exc)
        return None


def _module_file(name: str) -> str:
    return str(getattr(pywin32(name), "__file__", ""))


def _base_python() -> str:
    """The base interpreter: what a venv's python.exe launcher would run (see the module docstring)."""
    base = Path(getattr(sys, "_base_executable", "") or sys.executable)
    if base.name.lower() != "python.exe":
        base = Path(sys.base_exec_prefix) / "python.exe"
    return str(base)


def _read_password(account: str) -> str:
    """The account's password: one line from stdin when it is piped, else a prompt without echo.
    Never from the command line, never logged or stored by servicehost."""
    if sys.stdin is not None and not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    return getpass.getpass(f"password for {account}: ")
