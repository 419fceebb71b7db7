"""The contracts every platform (service manager) builds on.

* :class:`Platform` — what a platform does: say whether it is present, and run a host under its
  manager (translating OS events into host calls and host events into notifications).
* :class:`Manager` — install/update/remove/start/stop/restart/status/pause/continue/control/reload
  of an installed service, one implementation per manager; the CLI commands call only this.
* :class:`InstallOptions` — the one set of install options for every manager, and
  :func:`option_support`, per manager, how each option maps — or why it is refused (each
  platform states its own column in its ``ENTRY``).
* :class:`ServiceStatus` — the status record every manager's ``status`` fills (a field the
  manager cannot tell stays ``None`` and prints ``unknown``); :data:`STATE_CODES` gives each state
  its LSB exit code (:class:`StatusCode`), :meth:`ServiceStatus.as_json` the ``--json`` document.
* :func:`launch_command` — the exact command line a manager launches.
* :func:`wait_until` — the one way a manager waits for an outside process to reach a state.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import ConfigError, ExitCode, UsageError
from ..host import Host
from ..stopping import Deadline
from .entry import Refused

if TYPE_CHECKING:  # record.py builds on this module
    from .record import InstallRecord

T = TypeVar("T")


class Platform(Protocol):
    """A service manager servicehost can run under."""

    name: str

    def detect(self, env: Mapping[str, str]) -> str | None:
        """Why this process runs under this manager right now (None: it does not)."""

    def installable(self, env: Mapping[str, str]) -> str | None:
        """Why services can be installed into this manager from here (None: they cannot)."""

    def holds_services(self, env: Mapping[str, str]) -> bool:
        """Whether services installed under this manager may be on this machine: where
        ``servicehost list`` looks, and where an installed service's NAME is looked up."""

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Run ``host`` until it stops; return its exit code. Called on the main thread."""

    def manager(self) -> Manager:
        """The install/start/status interface (PlatformUnavailable if there is none here)."""

    # Optional: ``console_formatter(env) -> logging.Formatter | None``, how this manager wants
    # stderr written (systemd: journald's priority prefixes); the CLI sets it before the first line.


class Manager(Protocol):
    """Controls installed services under one service manager. Every manager keeps this contract;
    ``tests/platforms/test_manager_contract.py`` runs one suite against each (supervisord, systemd,
    the SCM), through the ``servicehost`` command line.

    ``wait`` (start, stop, restart), the same everywhere:

    * ``None``: the manager's own default (long enough for the service's start and stop timeouts);
    * ``0``: queue the request and return as soon as the manager accepted it, as the SCM's
      StartService/ControlService do; ``status`` shows ``starting``/``stopping`` meanwhile;
    * ``N``: at most N seconds.

    A waiting call returns once the state is reached and waits with :func:`wait_until`. Errors are
    ServiceHostError subclasses whose message says what to fix (``cli``/``manage`` print it):
    a service that is not installed is a UsageError (exit 2) for every call but ``status``
    (state ``not-installed``); pause/continue/control/reload of a service that is not running
    is exit 2 too.
    """

    name: str

    def install(self, options: InstallOptions, command: list[str]) -> None:
        """Register the service to run ``command`` (from :func:`launch_command`); do not start it.
        Already installed: UsageError saying so, except under the SCM, which updates it in place
        (as pywin32's install does) and logs that it did."""

    def update(self, options: InstallOptions, command: list[str]) -> None:
        """Change an installed service; never restarts it (a running service keeps its old
        settings until ``restart``). ``options`` and ``command`` are whole: ``manage``'s update
        overlays what it was given on :meth:`record` first."""

    def installed(self) -> list[str]:
        """The names of the services servicehost installed under this manager, sorted."""

    def is_installed(self, name: str) -> bool:
        """Whether servicehost installed a service called ``name`` under this manager."""

    def record(self, name: str) -> InstallRecord | None:
        """What install/update recorded for ``name`` (``record.py``), read back from where the
        manager keeps the service; None for a service an older servicehost installed, which
        recorded nothing. UsageError when it is not installed."""

    def remove(self, name: str, *, purge: bool = False) -> None:
        """Stop (if running) and unregister; keep its data unless ``purge``."""

    def start(self, name: str, *, args: Sequence[str] = (), wait: float | None = None) -> None:
        """Start it; return once every service said it is ready (``status``: running). Not ready
        within ``wait``, or stopped while starting: StartupError (exit 3)."""

    def stop(self, name: str, *, wait: float | None = None) -> None:
        """Stop it (the graceful drain); return once it has stopped. Already stopped: nothing to do.
        Still stopping after ``wait``: StopIncomplete (exit 4)."""

    def restart(self, name: str, *, wait: float | None = None) -> None:
        """Stop, then start (a new process). ``wait=0``: the start is queued once the old process
        is gone; a manager that cannot queue a start behind a stop waits for the stop (its default)."""

    def status(self, name: str) -> ServiceStatus: ...

    def pause(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def control(self, name: str, code: int) -> None:
        """Deliver a custom control code (128-255; anything else: UsageError) to the service."""

    def reload(self, name: str) -> None: ...

    def ask(self, name: str, command: str, *, timeout: float | None = None, **args: Any) -> Any:
        """Run ``command`` (``threads``, ``config``, ``loglevel``, ...: ``control.COMMANDS``) in the
        running service through its control channel (the unix socket, the Windows named pipe);
        its result. ControlUnavailable when it does not answer, ControlChannelError (exit 2)
        when it refuses, saying why (and which group would let the caller read)."""

    def logs(self, name: str, size: int = 16384) -> str:
        """The last ``size`` bytes (about) of the service's log, as the manager keeps it."""

    def follow_logs(self, name: str, lines: int) -> list[str]:
        """The command (``journalctl -f``, ``tail -F``) that shows the last ``lines`` lines of the
        service's log, then each new one until it is interrupted (``logs --follow``).
        UsageError where the manager keeps no log that can be followed."""


def wait_until(done: Callable[[], T], deadline: Deadline, expired: Callable[[], BaseException], *,
               first: float = 0.01, longest: float = 0.25) -> T:
    """Ask ``done()`` until it returns something true, and return that: how every manager waits
    for something outside this process (a service, a supervisord, the SCM) to reach a state.

    Between two asks it sleeps ``first`` seconds, doubling up to ``longest`` (a quick change is
    seen at once, a slow one costs few asks), never past ``deadline``; ``done()`` is asked once
    more at the deadline. If it is still false then, ``expired()`` is raised: the caller's error,
    saying what it waited for and what it saw last. ``done`` may raise to end the wait early (a
    service that stopped while starting). With ``Deadline.never()`` only ``done`` ends the wait.
    """
    delay = first
    while True:
        value = done()
        if value:
            return value
        if deadline.expired:
            raise expired()
        time.sleep(deadline.remaining(delay) or 0.0)
        delay = min(delay * 2, longest)


class StartMode(StrEnum):
    """When the manager starts the service (``install --start``)."""

    AUTO = "auto"
    """At boot (or when the manager starts)."""
    DELAYED = "delayed"
    """At boot, after the other automatic services (the SCM's delayed auto-start)."""
    MANUAL = "manual"
    """Only when asked (``servicehost start``)."""
    DISABLED = "disabled"
    """Not even when asked, until ``update --start`` gives another mode."""


START_MODES = tuple(mode.value for mode in StartMode)


@dataclass(frozen=True, kw_only=True)
class InstallOptions:
    """Install options, one set for every manager (mapped per manager: :func:`option_support`)."""

    name: str
    """Service name (the SCM key, the unit name, the supervisord program name)."""
    display_name: str = ""
    description: str = ""
    start_mode: StartMode = StartMode.AUTO
    """auto | delayed | manual | disabled (a string is taken as its member)."""
    dependencies: tuple[str, ...] = ()
    """Services that must run first."""
    account: str = ""
    """Empty: the least-privileged account the manager offers (virtual account, DynamicUser)."""
    environment: tuple[tuple[str, str], ...] = ()
    working_directory: str = ""
    stop_timeout: float = 30.0
    """The graceful-stop time; the manager's own kill timeout is derived with a margin."""
    restart: bool = True
    """Restart after a failure exit (never after a requested stop)."""
    restart_delay: float = 5.0
    watchdog: float = 0.0
    """Seconds without a healthy heartbeat before the service is restarted (0: off)."""
    config_file: str = ""
    state_dir: str = ""

    def __post_init__(self) -> None:
        if self.start_mode not in START_MODES:
            raise ValueError(f"start_mode must be one of {', '.join(START_MODES)}, got {self.start_mode!r}")
        object.__setattr__(self, "start_mode", StartMode(self.start_mode))


#: The install options whose mapping each platform states in its ``ENTRY.options`` (how the
#: manager maps it, or ``Refused(reason)``); a value is checked only when it differs from the default.
OPTION_KEYS = (
    'start_mode',
    'start_mode=delayed',
    'start_mode=disabled',
    'dependencies',
    'account',
    'environment',
    'environment=@file',
    'working_directory',
    'stop_timeout',
    'restart',
    'restart_delay',
    'restart_delay!=default',
    'watchdog',
)


def option_support() -> dict[str, dict[str, str | Refused]]:
    """Per option, per manager: how it maps or why it is refused (collected from the platforms)."""
    from . import PLATFORMS, entry

    entries = [entry(name) for name in PLATFORMS]
    return {key: {e.name: e.options[key] for e in entries if key in e.options} for key in OPTION_KEYS}


def refusals(options: InstallOptions, manager: str) -> list[str]:
    """Every reason ``manager`` cannot honour ``options`` (empty: it can)."""
    from . import entry

    keys = []
    if options.start_mode in ("delayed", "disabled"):
        keys.append(f"start_mode={options.start_mode}")
    if options.dependencies:
        keys.append("dependencies")
    if options.restart_delay != InstallOptions.__dataclass_fields__["restart_delay"].default:
        keys.append("restart_delay!=default")
    out = []
    for key in keys:
        rule = entry(manager).options.get(key)
        if isinstance(rule, Refused):
            out.append(f"{key}: {rule.reason}")
    return out


# -- secrets: --env NAME=@/path/to/file -------------------------------------------------------------
#: ``--env NAME=@PATH`` gives the service a secret kept in the file PATH: every manager hands the
#: service ``NAME_FILE``, the path of a copy only the service's account (and the administrators)
#: can read; the secret itself never goes into the manager's config, the environment, a process's
#: command line, a log or an error. ``--env NAME=@@text`` is the literal value ``@text``.
SECRET_MARK = "@"
#: A secret file larger than this is refused (a secret is small; /dev/zero would never end).
SECRET_MAX_BYTES = 64 * 1024
_SECRET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Secret:
    """One ``--env NAME=@PATH``: the service reads the secret from the file named by ``NAME_FILE``."""

    key: str
    path: str
    """Absolute path of the file given at install (relative paths are taken from the current directory)."""

    @property
    def variable(self) -> str:
        """The variable the service gets: ``NAME_FILE``."""
        return f"{self.key}_FILE"

    def read(self) -> bytes:
        """The secret's bytes, for a manager to copy (never to show). ConfigError (exit 2, one line)
        when the file is missing, unreadable, not a regular file or larger than SECRET_MAX_BYTES."""
        where = f"--env {self.key}=@{self.path}"
        expected = f"a readable regular file holding the secret (at most {SECRET_MAX_BYTES // 1024} KiB)"
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags)  # non-blocking: a FIFO must not hang install
        except OSError as exc:
            raise ConfigError(where, None, expected, _why(exc)) from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
                raise ConfigError(where, None, expected, kind)
            chunks, size = [], 0
            while chunk := os.read(fd, SECRET_MAX_BYTES + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > SECRET_MAX_BYTES:
                    raise ConfigError(where, None, expected, f"a file larger than {SECRET_MAX_BYTES} bytes")
        except OSError as exc:
            raise ConfigError(where, None, expected, _why(exc)) from None
        finally:
            os.close(fd)
        return b"".join(chunks)


def _why(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def split_environment(pairs: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[Secret]]:
    """(plain variables, secrets) of ``--env`` pairs, the same for every manager.

    ``NAME=@PATH`` is a secret (PATH made absolute); ``NAME=@@text`` is the plain value ``@text``;
    any other value is plain. UsageError (exit 2) for ``NAME=@`` with no path, a secret whose name
    is not a variable name, and a secret's NAME or NAME_FILE given twice.
    """
    plain: list[tuple[str, str]] = []
    secrets: list[Secret] = []
    for key, value in pairs:
        if value.startswith(SECRET_MARK * 2):
            plain.append((key, value[1:]))
        elif value.startswith(SECRET_MARK):
            path = value[1:]
            if not _SECRET_KEY.fullmatch(key):
                raise UsageError(f"--env {key}=@...: a secret's name must be a variable name (letters, digits "
                                 f"and _, not starting with a digit): the service gets it as NAME_FILE")
            if not path or "\x00" in path:
                raise UsageError(f"--env {key}=@: name the file holding the secret after the @ "
                                 f"(--env {key}=@/path/to/file), or write @@ for a value starting with @")
            secrets.append(Secret(key, os.path.abspath(path)))
        else:
            plain.append((key, value))
    names = [k for k, _ in plain] + [s.key for s in secrets]
    for key in [s.key for s in secrets] + [s.variable for s in secrets]:
        if names.count(key) + [s.variable for s in secrets].count(key) > 1:
            raise UsageError(f"--env {key}: given twice (a secret NAME=@file also sets NAME_FILE); give it once")
    return plain, secrets


class StatusCode(IntEnum):
    """The exit code of ``servicehost status``, as LSB init scripts and ``systemctl status`` give it."""

    RUNNING = 0
    """The service's process is alive: running, or on its way (starting, pausing, paused, resuming,
    stopping)."""
    NOT_RUNNING = 3
    """Installed, no process: stopped, failed, or waiting for the manager to restart it."""
    UNKNOWN = 4
    """Not installed (and nothing answers by that name), or the manager could not tell."""


#: Every state ``status`` reports, and the code it exits with. ``restarting``: the service ended
#: with a failure and its manager will start it again after a delay (a crash loop shows this
#: between two runs, never ``starting``).
STATE_CODES: Mapping[str, StatusCode] = {
    "running": StatusCode.RUNNING, "starting": StatusCode.RUNNING, "pausing": StatusCode.RUNNING,
    "paused": StatusCode.RUNNING, "resuming": StatusCode.RUNNING, "draining": StatusCode.RUNNING,
    "stopping": StatusCode.RUNNING,
    "stopped": StatusCode.NOT_RUNNING, "failed": StatusCode.NOT_RUNNING, "restarting": StatusCode.NOT_RUNNING,
    "not-installed": StatusCode.UNKNOWN, "unknown": StatusCode.UNKNOWN,
}

#: The version of ``status --json``'s document (:meth:`ServiceStatus.as_json`). Keys are only ever
#: added within a version; a key removed or a meaning changed makes a new version.
STATUS_SCHEMA = 1


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` shows, the same on every manager. ``None``: the manager cannot tell (the
    text prints ``unknown``, the JSON ``null``)."""

    name: str
    manager: str
    """The manager it is installed under, or ``foreground`` for a run in a terminal."""
    state: str
    """A key of :data:`STATE_CODES`: running | starting | pausing | paused | resuming | draining |
    stopping | stopped | failed | restarting | not-installed | unknown."""
    pid: int | None = None
    uptime: float | None = None
    """Seconds since the running process started."""
    restarts: int | None = None
    last_exit: int | None = None
    """The last run's exit code; minus the signal number when a signal killed it."""
    detail: Mapping[str, str] = field(default_factory=dict)
    """The manager's own extras (unit file, log path, ...), shown as they are."""
    sub_state: str | None = None
    """The manager's own word for the state (systemd's SubState, supervisord's process state, the
    SCM's state, the host's lifecycle state for a foreground run)."""
    ready: bool | None = None
    """The service itself said it is ready (its host reached RUNNING and has not begun stopping)."""
    account: str | None = None
    start_mode: str | None = None
    """auto | delayed | manual | disabled, as the manager has it now."""
    status_line: str | None = None
    """The service's own one-line summary (its host's ``status_line``: state and counters)."""
    counters: Sequence[Mapping[str, object]] | None = None
    """Each component's live counters, as the service's control channel answers them."""
    state_since: float | None = None
    """When the service entered its state, as it says (``time.time()``)."""
    healthy: bool | None = None
    """The service says no worker is hung and nothing failed."""
    last_error: Mapping[str, object] | None = None
    """The latest task failure the service recorded: ``{"component", "error", "at"}``."""
    version: str | None = None
    """The service's own ``version``."""
    servicehost_version: str | None = None
    python: str | None = None

    @property
    def code(self) -> StatusCode:
        """What ``status`` exits with (:data:`STATE_CODES`; a state not listed there is unknown)."""
        return STATE_CODES.get(self.state, StatusCode.UNKNOWN)

    def lines(self, now: float | None = None) -> list[str]:
        """The screen ``servicehost status`` prints (``status_screen.py``): the header (name,
        manager, state and since when, pid, version, ...), then, when the service answers on its
        control channel, each component's busy/size, queue, done, failed, run times, timers' last
        and next run, and the last error. ``now``: the wall clock (``time.time()``)."""
        from .status_screen import screen

        return screen(self, time.time() if now is None else now)

    def as_json(self, now: float | None = None) -> dict[str, object]:
        """The ``status --json`` document (schema :data:`STATUS_SCHEMA`, documented in the README):
        every key is always there, ``null`` where the manager cannot tell. ``now``: the wall clock
        (``time.time()``) that ``since`` is counted back from."""
        now = time.time() if now is None else now
        since = None
        if self.uptime is not None:
            since = datetime.fromtimestamp(now - self.uptime, timezone.utc).isoformat(timespec="seconds")
        return {
            "schema": STATUS_SCHEMA,
            "name": self.name,
            "manager": self.manager,
            "state": self.state,
            "sub_state": self.sub_state,
            "status_code": int(self.code),
            "running": self.code is StatusCode.RUNNING,
            "ready": self.ready,
            "pid": self.pid,
            "since": since,
            "uptime": None if self.uptime is None else round(self.uptime, 3),
            "restarts": self.restarts,
            "last_exit": None if self.last_exit is None else _exit_json(self.last_exit),
            "account": self.account,
            "start_mode": self.start_mode,
            "status_line": self.status_line,
            "counters": None if self.counters is None else [dict(c) for c in self.counters],
            "detail": dict(self.detail),
            "state_since": None if self.state_since is None else _iso(self.state_since),
            "healthy": self.healthy,
            "last_error": None if self.last_error is None else _error_json(self.last_error),
            "version": self.version,
            "servicehost_version": self.servicehost_version,
            "python": self.python,
        }


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds")


def _error_json(error: Mapping[str, object]) -> dict[str, object]:
    at = error.get("at")
    return {"component": error.get("component"), "error": error.get("error"),
            "at": _iso(at) if isinstance(at, (int, float)) else None}


def exit_name(code: int) -> str:
    """``1 (CRASH)``; a code servicehost does not define: the number."""
    try:
        return f"{code} ({ExitCode(code).name})"
    except ValueError:
        return str(code)


def _exit_json(code: int) -> dict[str, object]:
    """``{"code": 1, "name": "CRASH", "signal": null}``; killed by a signal: ``{"code": null,
    "name": null, "signal": "SIGKILL"}``."""
    if code < 0:
        try:
            signame: str | None = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        return {"code": None, "name": None, "signal": signame}
    try:
        meaning: str | None = ExitCode(code).name
    except ValueError:
        meaning = None
    return {"code": code, "name": meaning, "signal": None}


def launch_command(target: str, *, config_file: str = "", state_dir: str = "",
                   interpreter: str | None = None) -> list[str]:
    """The exact command a manager launches: absolute interpreter, absolute paths.

    Managers change the working directory (the SCM to System32, systemd to /), so nothing here
    may be relative. A ``file.py[:Class]`` target is made absolute; ``module:Class`` is kept.
    """
    python = str(Path(interpreter or sys.executable).absolute())
    drive = target[:2] if target[1:2] == ":" and target[2:3] in ("\\", "/") else ""  # C:\app\svc.py:Class
    path_part, _, cls = target[len(drive):].partition(":")
    path_part = drive + path_part
    if path_part.endswith(".py"):
        target = str(Path(path_part).absolute()) + (f":{cls}" if cls else "")
    argv = [python, "-m", "servicehost", "run", target]
    if config_file:
        argv += ["--config", str(Path(config_file).absolute())]
    if state_dir:
        argv += ["--state-dir", str(Path(state_dir).absolute())]
    return argv
