"""systemd: ``Type=notify`` units rendered from the install options, and a running service that
tells systemd what it does. Pure Python: sd_notify is one AF_UNIX datagram; no libsystemd binding.

Running (:class:`SystemdPlatform`) is detected by ``NOTIFY_SOCKET`` (systemd sets it for
``Type=notify`` units), or by ``INVOCATION_ID`` when stderr really is the journal
(``JOURNAL_STREAM`` names stderr's device and inode; a bare ``INVOCATION_ID`` is inherited by every
child of a unit, e.g. a CI runner's tests, so it alone proves nothing). ``run`` is the foreground
signal handling (``signals_to_host``: SIGTERM stops, SIGHUP reloads) plus a :class:`NotifySession`:

    host event                         what systemd is told (one datagram on $NOTIFY_SOCKET)
    run() begins                       STATUS=starting, then EXTEND_TIMEOUT_USEC every second while
                                       the start goes on (bounded by start_timeout)
    every service ready (RUNNING)      READY=1 + STATUS=<state; live counters>
    reload (SIGHUP, ``reload``)        RELOADING=1 + MONOTONIC_USEC, the services' reload(), READY=1
    paused / resumed                   STATUS=
    stop requested (STOPPING)          STOPPING=1, then EXTEND_TIMEOUT_USEC every second until the
                                       stop deadline (a drain longer than TimeoutStopSec= survives)
    every second                       STATUS= when it changed; WATCHDOG=1 (when $WATCHDOG_USEC is
                                       set) only while ``host.healthy()``: a hung worker starves the
                                       watchdog, systemd kills the service and Restart= restarts it.
                                       (``install --watchdog`` also sets the host's hang policy, which
                                       usually acts first for a worker hung in Python: exit 5, then
                                       Restart=. systemd's kill is for a process that no longer runs
                                       at all, e.g. a worker holding the GIL in C code.)
    each log line on stderr            a journald priority prefix (``<3>`` error ... ``<7>`` debug)

plus the control channel (``control.py``) in the unit's RuntimeDirectory, for pause / continue /
control / reload, which systemd has no verbs for.

Installing (:class:`SystemdManager`): as root, a system unit in ``/usr/local/lib/systemd/system``
(not /etc/systemd/system: that stays free for ``systemctl edit`` drop-ins, enable links and the
mask that ``--start disabled`` needs); as another user, a user unit (see "User units" below).
``daemon-reload`` follows every change; ``update`` never restarts; ``remove`` stops first and keeps
the state and logs unless ``--purge`` (``systemctl clean``).

How the install options map (:func:`render_unit`, a pure function of the options and command):

    InstallOptions       unit
    name                 NAME.service ('@' refused: systemd reads it as a template instance)
    description          Description= (display name first)
    start_mode           auto: enable (WantedBy=); manual: not enabled; disabled: mask;
                         delayed: refused (systemd has no delayed start; order it After= another)
    dependencies         Requires= + After= (a bare name gets .service)
    account              empty: DynamicUser=yes; "user" or "user:group": User= / Group=
    environment          Environment="K=V" (quoted, %-escaped); a value "@/path" is a credential:
                         LoadCredential=K:/path and Environment=K_FILE=%d/K, so the secret is never
                         in the unit ("@@x" is the value "@x"); a secret-looking name (…PASSWORD,
                         …TOKEN, …SECRET, API_KEY…) with a plain value is refused, so are
                         secret-looking flags in the command
    working_directory    WorkingDirectory= (default /)
    stop_timeout         TimeoutStopSec = stop_timeout + STOP_MARGIN
    restart              Restart=on-failure, RestartSec=restart_delay, StartLimitBurst/IntervalSec
    watchdog             WatchdogSec=
    state_dir            under /var/lib: StateDirectory= (works with DynamicUser=); elsewhere:
                         ReadWritePaths= (not with DynamicUser=)
    (start_timeout)      TimeoutStartSec = start_timeout + START_MARGIN (the value the service will
                         see: its flag in the command, else --env SERVICEHOST_START_TIMEOUT, else
                         the config file, else the default)
    always               Type=notify, NotifyAccess=main, KillMode=mixed (the host stops its pool
                         children itself; SIGKILL for all only at the timeout),
                         SuccessExitStatus / RestartPreventExitStatus from ENTRY.exit_status,
                         LimitNOFILE=, LogsDirectory=, RuntimeDirectory= (control channel),
                         ExecReload= (SIGHUP), and the hardening in HARDENING (exposure ~1.3 by
                         ``systemd-analyze security``). ProtectHome= becomes read-only, and
                         PrivateTmp= off, when the interpreter, the code or the state live under
                         /home, /root, /run/user or /tmp, /var/tmp (a note says so at install).

ExecStart= escaping: each word is quoted when it needs it, ``\\`` ``"`` and control characters are
C-escaped, ``%`` becomes ``%%`` (specifiers) and ``$`` becomes ``$$`` (variable expansion), so
systemd passes exactly the words of the command.

User units (installing as a non-root user, ``systemctl --user``): the unit goes to
``$XDG_DATA_HOME/systemd/user`` (default ~/.local/share/systemd/user) and is enabled for
``default.target``. It runs as that user, so ``--username`` is refused, and the hardening is
limited to what needs no privileges (NoNewPrivileges=, UMask=): the sandboxing options need user
namespaces that many machines disable for unprivileged users. A user manager runs only while the
user is logged in unless ``loginctl enable-linger USER``. These units are checked with
``systemd-analyze verify --user`` in the tests; they are not booted there.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import math
import os
import pwd
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import Any, Self, cast

from ... import config as config_mod
from ... import logs
from ...errors import (
    ConfigError,
    ExitCode,
    PlatformUnavailable,
    ServiceHostError,
    StartupError,
    StopIncomplete,
    UsageError,
)
from ...host import Host
from ...lifecycle import HostState
from . import ENTRY
from ..base import InstallOptions, Secret, ServiceStatus, refusals
from ..base import split_environment as split_secrets
from ..control import COMMANDS as CONTROL_COMMANDS
from ..control import (
    ChannelOperations,
    ControlClient,
    ControlServer,
    Request,
    check_name,
    socket_path,
)
from ..foreground import signals_to_host

log = logging.getLogger("servicehost.platforms.systemd")

BOOTED_MARKER = Path("/run/systemd/system")  # sd_booted(): exists only when systemd is PID 1
SYSTEM_UNIT_DIR = Path("/usr/local/lib/systemd/system")
MARKER = "# Written by servicehost"
#: Seconds added to stop_timeout for TimeoutStopSec=: the host returns at its deadline, then exits.
STOP_MARGIN = 10
#: Seconds added to start_timeout for TimeoutStartSec=: the interpreter starts and imports first.
START_MARGIN = 15
START_LIMIT_BURST = 5
LIMIT_NOFILE = 65536
#: How often the session wakes to send WATCHDOG=1, STATUS= and EXTEND_TIMEOUT_USEC (seconds).
TICK = 1.0
#: Each EXTEND_TIMEOUT_USEC gives this much time; it is renewed every tick while work goes on,
#: so a wedged process still meets a timeout soon after it stops renewing.
EXTEND_WINDOW = 5.0
#: A datagram to systemd never blocks the host longer than this.
SEND_TIMEOUT = 2.0
SYSTEMCTL_TIMEOUT = 60.0
#: Extra wait of start/stop beyond the unit's own timeouts, before the CLI gives up waiting.
WAIT_SLACK = 30.0
HOME_ROOTS = ("/home", "/root", "/run/user")
TMP_ROOTS = ("/tmp", "/var/tmp")

#: The hardening of system units, in order. Each line can be relaxed per unit with a drop-in
#: (``systemctl edit NAME``); ProtectHome= and PrivateTmp= are relaxed by render_unit when needed.
HARDENING: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateUsers", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources"),
    ("SystemCallErrorNumber", "EPERM"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("DevicePolicy", "closed"),
    ("KeyringMode", "private"),
    ("RemoveIPC", "yes"),
)
# Not set, on purpose: MemoryDenyWriteExecute= (breaks ctypes/cffi callbacks and JITs),
# ProcSubset=pid (breaks psutil-style /proc readers), PrivateNetwork=/IPAddressDeny= (services
# serve and call the network). Add them with a drop-in where they fit.


# -- sd_notify ---------------------------------------------------------------------------------------
class Notifier:
    """Sends sd_notify(3) messages: one datagram per message on the AF_UNIX socket systemd gave.

    Thread-safe. A failed send is logged at debug and reported as False (systemd may be gone, e.g.
    while it re-executes); it never raises into the host. The kernel attaches this process's
    credentials, which ``NotifyAccess=main`` checks: send from the main process only (any thread).
    """

    def __init__(self, address: str) -> None:
        if address.startswith("@"):
            self.address = "\0" + address[1:]  # abstract namespace
        elif address.startswith("/"):
            self.address = address
        else:
            raise ValueError(f"NOTIFY_SOCKET={address!r}: only AF_UNIX addresses are supported")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(SEND_TIMEOUT)
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_env(cls, env: MutableMapping[str, str], *, unset: bool = True) -> Notifier | None:
        """The notifier for ``$NOTIFY_SOCKET`` (None when unset). ``unset`` removes the variable,
        as ``sd_notify(unset_environment=1)`` does, so children (process pools) do not inherit it."""
        address = env.pop("NOTIFY_SOCKET", None) if unset else env.get("NOTIFY_SOCKET")
        if not address:
            return None
        try:
            return cls(address)
        except ValueError as exc:
            logs.notify_failed(log, exc)
            return None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one message; True if it was sent."""
        for f in fields:
            if "\n" in f or "=" not in f:
                raise ValueError(f"sd_notify field {f!r}: expected KEY=VALUE on one line")
        data = "\n".join(fields).encode("utf-8", "replace")
        with self._lock:
            if self._closed:
                return False
            try:
                self._sock.sendto(data, self.address)
            except OSError as exc:
                logs.notify_failed(log, exc)
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._sock.close()


def watchdog_interval(env: MutableMapping[str, str], *, unset: bool = True, pid: int | None = None
                      ) -> float | None:
    """Seconds between WATCHDOG=1 messages (half of ``$WATCHDOG_USEC``), or None when the watchdog
    is off or meant for another process (``$WATCHDOG_PID``). ``unset`` removes both variables."""
    usec = env.pop("WATCHDOG_USEC", None) if unset else env.get("WATCHDOG_USEC")
    for_pid = env.pop("WATCHDOG_PID", None) if unset else env.get("WATCHDOG_PID")
    try:
        if not usec or int(usec) <= 0:
            return None
        if for_pid and int(for_pid) != (os.getpid() if pid is None else pid):
            return None
    except ValueError as exc:
        logs.notify_failed(log, exc)
        return None
    return int(usec) / 2e6


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class NotifySession:
    """Tells systemd what ``host`` does (see the module docstring's table).

    ``start()`` subscribes to the host's lifecycle and starts one daemon thread (the tick loop);
    ``close()`` stops it. Lifecycle listeners run on the thread that moved the host and only send
    a datagram (never block longer than SEND_TIMEOUT, never raise into the host).
    """

    def __init__(self, host: Host, notifier: Notifier, *, watchdog: float | None = None,
                 tick: float = TICK, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.notifier = notifier
        self.watchdog = watchdog
        self.tick = min(tick, watchdog) if watchdog else tick
        self.clock = clock
        self._started_at = clock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status = ""
        self._starving = False
        self._extend_usec = int(max(EXTEND_WINDOW, 3 * self.tick) * 1e6)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._started_at = self.clock()
        self.host.lifecycle.subscribe(self._on_move)
        self.notifier.notify(*self._status_fields("starting"), *self._extend_fields())
        self._thread = threading.Thread(target=self._loop, name="servicehost-systemd", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(SEND_TIMEOUT * 2)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_move(self, old: HostState, new: HostState) -> None:
        try:
            if new is HostState.RUNNING and old is HostState.STARTING:
                self.notifier.notify("READY=1", *self._status_fields())
            elif new is HostState.STOPPING:
                self.notifier.notify("STOPPING=1", *self._status_fields(), *self._extend_fields())
            else:
                self.notifier.notify(*self._status_fields())
        except Exception as exc:  # noqa: BLE001  a listener must never break a lifecycle move
            logs.notify_failed(log, exc)

    def reload(self) -> None:
        """The services' ``reload()`` between RELOADING=1 and READY=1 (SIGHUP, control channel)."""
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")
        try:
            self.host.reload()
        finally:
            self.notifier.notify("READY=1", *self._status_fields())

    # -- the tick loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        self.step()
        while not self._closing.wait(self.tick):
            self.step()

    def step(self) -> None:
        """One tick: watchdog, timeout extension, status. Public for tests that drive the clock."""
        try:
            fields: list[str] = []
            if self.watchdog:
                fields += self._watchdog_fields()
            fields += self._extend_fields()
            status = self._status_text()
            if status != self._last_status:
                fields.append(f"STATUS={status}")
            if fields:
                self.notifier.notify(*fields)
                self._last_status = status
        except Exception as exc:  # noqa: BLE001  keep ticking: one bad read must not stop the watchdog
            logs.notify_failed(log, exc)

    def _watchdog_fields(self) -> list[str]:
        hung = self.host.hung()
        if self.host.healthy():
            if self._starving:
                self._starving = False
                logs.systemd_watchdog_fed(log)
            return ["WATCHDOG=1"]
        if not self._starving:
            self._starving = True
            what = ", ".join(f"{b.component}/{b.worker} in {b.current}" for b in hung) or "the host is failing"
            logs.systemd_watchdog_starved(log, what)
        return []

    def _extend_fields(self) -> list[str]:
        """EXTEND_TIMEOUT_USEC while a start or a drain is under way, within the host's own limits:
        the start until start_timeout (+ slack) has passed, the stop until its deadline."""
        state = self.host.state
        if state in (HostState.CREATED, HostState.STARTING):
            if self.clock() - self._started_at < self.host.config.start_timeout + START_MARGIN:
                return [f"EXTEND_TIMEOUT_USEC={self._extend_usec}"]
        elif state is HostState.STOPPING:
            token = self.host.stop_token
            if not token.forced and not token.deadline.expired:
                return [f"EXTEND_TIMEOUT_USEC={self._extend_usec}"]
        return []

    def _status_text(self, state: str | None = None) -> str:
        if state is None and self.host.state is HostState.CREATED:
            state = "starting"  # run() has begun; the host has not moved yet
        return _one_line(state if state is not None else self.host.status_line())

    def _status_fields(self, state: str | None = None) -> list[str]:
        text = self._status_text(state)
        self._last_status = text
        return [f"STATUS={text}"]


class _SignalTarget:
    """What ``signals_to_host`` calls: the host's request_stop, and reload with notifications."""

    def __init__(self, host: Host, session: NotifySession | None) -> None:
        self._host = host
        self._session = session

    def request_stop(self, reason: str = "requested") -> None:
        self._host.request_stop(reason)

    def reload(self) -> None:
        if self._session is None:
            self._host.reload()
        else:
            self._session.reload()


# -- journald ---------------------------------------------------------------------------------------
#: syslog priorities journald reads from a "<N>" line prefix (SyslogLevelPrefix=, on by default).
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    for level, prio in PRIORITIES:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>LEVEL logger: message`` on every line (a traceback's lines keep the record's priority);
    no timestamp: journald adds its own."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in (super().format(record).splitlines() or [""]))


def stderr_is_journal(env: Mapping[str, str], fd: int = 2) -> bool:
    """True when ``fd`` is the stream systemd connected to the journal (``$JOURNAL_STREAM``)."""
    dev, sep, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def use_journal_prefixes(env: Mapping[str, str]) -> bool:
    """Switch the console (stderr) log handlers to :class:`JournalFormatter` when stderr is the
    journal. Returns whether it did."""
    if not stderr_is_journal(env):
        return False
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and handler.stream is sys.stderr:
            handler.setFormatter(JournalFormatter())
    return True


# -- unit rendering ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """Which systemd instance: the system's (root) or a user's (``systemctl --user``)."""

    user: bool
    unit_dir: Path

    @property
    def systemctl(self) -> list[str]:
        return ["systemctl", "--user"] if self.user else ["systemctl"]

    @property
    def journalctl(self) -> list[str]:
        return ["journalctl", "--user"] if self.user else ["journalctl"]

    @property
    def wanted_by(self) -> str:
        return "default.target" if self.user else "multi-user.target"

    def runtime_base(self, env: Mapping[str, str]) -> Path:
        """Where RuntimeDirectory=servicehost/NAME lands (%t/servicehost)."""
        if self.user:
            return Path(env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}") / "servicehost"
        return Path("/run/servicehost")


SYSTEM = Scope(False, SYSTEM_UNIT_DIR)


def user_scope(env: Mapping[str, str]) -> Scope:
    data = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Scope(True, Path(data) / "systemd" / "user")


@dataclass(frozen=True, kw_only=True)
class UnitSettings:
    """What a unit needs beyond InstallOptions; :class:`SystemdManager` fills it in."""

    start_timeout: float = config_mod.HostConfig.start_timeout
    """The start_timeout the service will see: TimeoutStartSec= adds START_MARGIN to it."""
    limit_nofile: int = LIMIT_NOFILE
    """LimitNOFILE= (open files; sockets count)."""
    paths: tuple[str, ...] = ()
    """Paths the service reads (the resolved interpreter, its prefix, sys.path, the code): hardening
    that would hide them is relaxed (ProtectHome=read-only, PrivateTmp=no) with a note."""
    log_dir: str = ""
    """The directory of a log_file outside the state dir (made writable: LogsDirectory=/ReadWritePaths=)."""


@dataclass(frozen=True)
class Unit:
    """A rendered unit: its file name, text, and notes for the admin (hardening relaxed, and why)."""

    name: str
    text: str
    notes: tuple[str, ...] = ()
    credentials: tuple[tuple[str, str], ...] = ()
    """(name, file) pairs passed with LoadCredential= (the files must exist when the unit starts)."""


_SAFE_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_UNIT_SUFFIXES = ("service", "socket", "target", "mount", "timer", "path", "device", "slice", "scope", "swap",
                  "automount")
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(" + "|".join(_UNIT_SUFFIXES) + ")")
_SECRET_PARTS = {"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "SECRETS", "TOKEN", "TOKENS", "APIKEY", "CREDENTIAL",
                 "CREDENTIALS", "PRIVATEKEY"}
_SECRET_PAIRS = {("API", "KEY"), ("PRIVATE", "KEY"), ("ACCESS", "KEY"), ("SECRET", "KEY"), ("AUTH", "KEY")}


def looks_secret(name: str) -> bool:
    """True for names like DB_PASSWORD, GITHUB_TOKEN, api-key, AWS_SECRET_ACCESS_KEY."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name.upper()) if p]
    return any(p in _SECRET_PARTS for p in parts) or any(pair in _SECRET_PAIRS for pair in pairwise(parts))


def _check_text(text: str, what: str, *, show: bool = True) -> None:
    """Refuse what cannot go into a unit file at all (NUL, text that is not UTF-8)."""
    shown = f" {text!r}" if show else ""
    if "\x00" in text:
        raise UsageError(f"{what}{shown}: a NUL character cannot go into a unit file; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what}{shown}: not valid UTF-8 (unit files are UTF-8); use UTF-8 text") from None


def _c_escape(text: str, *, dollar: bool) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "%":
            out.append("%%")  # specifiers are expanded before anything else
        elif ch == "$" and dollar:
            out.append("$$")  # ExecStart= expands $VAR; $$ is a literal $
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def exec_word(word: str) -> str:
    """One word of ExecStart=, quoted and escaped so that systemd passes exactly ``word``."""
    _check_text(word, "command argument")
    if _SAFE_WORD.fullmatch(word):
        return word
    return _c_escape(word, dollar=True)


def exec_line(argv: Sequence[str]) -> str:
    """The value of ExecStart= for ``argv`` (the executable must be an absolute path)."""
    if not argv:
        raise UsageError("the service command is empty")
    if not argv[0].startswith("/"):
        raise UsageError(f"the service command must start with an absolute interpreter path, not {argv[0]!r}")
    return " ".join(exec_word(w) for w in argv)


def env_assignment(key: str, value: str) -> str:
    """One ``Environment=`` value: ``"KEY=value"`` quoted, %-escaped (no $ expansion happens there)."""
    if not _ENV_KEY.fullmatch(key):
        raise UsageError(f"--env {key!r}: a variable name is letters, digits and _ (not starting with a digit)")
    _check_text(value, f"--env {key}", show=False)
    return _c_escape(f"{key}={value}", dollar=False)


def _plain_value(text: str, what: str) -> str:
    """A value taken literally up to the end of the line (paths): %-escaped; what cannot be said
    there is refused."""
    _check_text(text, what)
    if any(not c.isprintable() for c in text) or text != text.strip() or text.endswith("\\"):
        raise UsageError(f"{what} {text!r}: control characters, leading or trailing spaces and a trailing "
                         "backslash cannot be written into a unit; choose another")
    return text.replace("%", "%%")


def _abs_path(text: str, what: str, *, spaces: bool = True) -> str:
    value = _plain_value(text, what)
    path = PurePosixPath(text)
    if not path.is_absolute() or ".." in path.parts or str(path) != text:
        raise UsageError(f"{what} {text!r}: expected a normalized absolute path (like /srv/app)")
    if not spaces and any(c.isspace() for c in text):
        raise UsageError(f"{what} {text!r}: a path with spaces cannot go into this list setting; choose another")
    return value


def _span(seconds: float, what: str) -> str:
    """A systemd time span: whole seconds as "Ns", anything else in milliseconds."""
    if not math.isfinite(seconds) or seconds < 0 or seconds > 10 * 365 * 86400:
        raise ConfigError("install options", what, "a number of seconds from 0 to 10 years", seconds)
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _description(options: InstallOptions) -> str:
    text = " - ".join(t for t in (options.display_name, options.description) if t.strip()) or options.name
    _check_text(text, "description")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text.rstrip("\\").replace("%", "%%") or options.name


def _dependency(name: str) -> str:
    unit = name if any(name.endswith("." + s) for s in _UNIT_SUFFIXES) else f"{name}.service"
    if not _UNIT_NAME.fullmatch(unit) or len(unit) > 255:
        raise UsageError(f"--depends {name!r}: not a unit name (letters, digits and :_.-\\@, e.g. postgresql "
                         "or network-online.target)")
    return unit


def unit_name(name: str) -> str:
    """``NAME.service`` for a servicehost service name; UsageError with the fix otherwise."""
    check_name(name)
    if "@" in name:
        raise UsageError(f"service name {name!r}: systemd reads '@' as a template instance; choose a name without it")
    return f"{name}.service"


def split_account(account: str) -> tuple[str, str]:
    """``"user"`` or ``"user:group"`` → (user, group); ("", "") for the default (DynamicUser=)."""
    user, _, group = account.partition(":")
    for part, what in ((user, "user"), (group, "group")):
        if part and not _ACCOUNT.fullmatch(part):
            raise UsageError(f"--username {account!r}: {part!r} is not a valid {what} name "
                             "(letters, digits, _ . -; at most 32; e.g. svc-app or svc-app:svc-app)")
    if group and not user:
        raise UsageError(f"--username {account!r}: give the user before the group (user:group)")
    return user, group


def split_environment(pairs: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(plain variables, credentials): a value ``@PATH`` names a credential file, ``@@text`` is the
    value ``@text`` (``base.split_environment``, the same for every manager). A secret-looking
    name with a plain value is refused (a unit is readable by every local user)."""
    given, secrets = split_secrets(pairs)
    plain: list[tuple[str, str]] = []
    credentials = [(s.key, _abs_path(s.path, f"--env {s.key}=@", spaces=False)) for s in secrets]
    for key, value in given:
        if not _ENV_KEY.fullmatch(key):
            raise UsageError(f"--env {key!r}: a variable name is letters, digits and _ (not starting with a digit)")
        if looks_secret(key):
            raise UsageError(
                f"--env {key}=...: this looks like a secret, and Environment= is readable by every local user "
                f"(systemctl show); put it in a file only root can read and give --env {key}=@/path/to/file: "
                f"systemd passes it with LoadCredential= and the service reads the file named by ${key}_FILE")
        else:
            plain.append((key, value))
    return plain, credentials


def _secret_flags(command: Sequence[str]) -> None:
    for word in command[1:]:
        flag = word.partition("=")[0]
        if flag.startswith("--") and looks_secret(flag[2:]):
            raise UsageError(
                f"the service command has {flag}: a secret in ExecStart= is readable by every local user; "
                "give it as a credential instead (--env NAME=@/path/to/file, read from $NAME_FILE)")


def _under(path: str, roots: Sequence[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def start_limit_interval(restart_delay: float) -> int:
    """StartLimitIntervalSec=: long enough that START_LIMIT_BURST quick failures in a row hit it."""
    return max(60, math.ceil(START_LIMIT_BURST * (restart_delay + 1) * 2))


def render_unit(options: InstallOptions, command: Sequence[str], *, scope: Scope = SYSTEM,
                settings: UnitSettings = UnitSettings()) -> Unit:
    """The unit for ``options`` running ``command``: a pure function (reads nothing, writes nothing).

    Raises UsageError / ConfigError, naming the option and the fix, for anything that cannot be
    said in a unit or that systemd cannot honour; nothing is written before this succeeds.
    """
    name = unit_name(options.name)
    for what, seconds in (("--shutdown-timeout", options.stop_timeout), ("--restart-delay", options.restart_delay),
                          ("--watchdog", options.watchdog), ("start_timeout", settings.start_timeout)):
        _span(seconds, what)  # a number of seconds systemd can take, or ConfigError naming the option
    refused = refusals(options, "systemd")
    if refused:
        raise UsageError("systemd cannot honour: " + "; ".join(refused))
    if options.start_mode not in ("auto", "manual", "disabled"):
        raise UsageError(f"start mode {options.start_mode!r}: systemd knows auto, manual and disabled")
    if options.watchdog and options.watchdog < 0.5:
        raise ConfigError("install options", "--watchdog", "0 (off) or at least 0.5 seconds", options.watchdog)
    if not 1 <= settings.limit_nofile <= 1 << 30:
        raise ConfigError("unit settings", "limit_nofile", "1 to 2^30", settings.limit_nofile)
    _secret_flags(command)
    exec_start = exec_line(command)
    user, group = split_account(options.account)
    if scope.user and user:
        raise UsageError(f"--username {options.account}: a user unit always runs as its user; leave --username "
                         "out, or install as root for a system unit")
    plain_env, credentials = split_environment(options.environment)
    notes: list[str] = []

    # Where the service writes: its state dir (StateDirectory= under /var/lib) and a log dir.
    state_directory = f"servicehost/{options.name}"
    read_write: list[str] = []
    if options.state_dir and not scope.user:
        state = _abs_path(options.state_dir, "state dir", spaces=False)
        if _under(options.state_dir, ("/var/lib",)) and options.state_dir != "/var/lib":
            state_directory = state[len("/var/lib/"):]
        elif not user:
            raise UsageError(
                f"state dir {options.state_dir}: DynamicUser= services keep state only under /var/lib "
                "(StateDirectory=); leave --state-dir at its default, or give --username")
        else:
            read_write.append(state)
    log_directory = f"servicehost/{options.name}"
    if settings.log_dir and not scope.user:
        logdir = _abs_path(settings.log_dir, "log_file's directory", spaces=False)
        if _under(settings.log_dir, ("/var/log",)) and settings.log_dir != "/var/log":
            log_directory = logdir[len("/var/log/"):]
        elif not user:
            raise UsageError(f"log_file in {settings.log_dir}: DynamicUser= services write logs only under "
                             "/var/log or their state dir; move log_file, or give --username")
        else:
            read_write.append(logdir)
    workdir = _abs_path(options.working_directory, "--workdir") if options.working_directory else ""

    # Hardening relaxed where the service's own files would be hidden.
    protect_home, private_tmp = "yes", "yes"
    seen = [*settings.paths, command[0], options.working_directory, options.state_dir, options.config_file,
            settings.log_dir, *(w for w in command[1:] if w.startswith("/"))]
    home_hits = sorted({p for p in seen if p and _under(p, HOME_ROOTS)})
    tmp_hits = sorted({p for p in seen if p and _under(p, TMP_ROOTS)})
    if home_hits and not scope.user:
        protect_home = "read-only"
        notes.append(f"ProtectHome=read-only instead of yes: the service needs {', '.join(home_hits[:3])}"
                     + (" (and more)" if len(home_hits) > 3 else "")
                     + "; move the interpreter and code out of /home and /root for the full protection")
    if tmp_hits and not scope.user:
        if not user:
            raise UsageError(
                f"{tmp_hits[0]} is in a temporary directory, which a DynamicUser= service cannot see (it always "
                "gets a private /tmp); put the interpreter, code and state elsewhere, or give --username")
        private_tmp = "no"
        notes.append(f"PrivateTmp=no: the service needs {', '.join(tmp_hits[:3])}; move it out of /tmp for a "
                     "private /tmp")
    if home_hits and not user and not scope.user:
        notes.append("DynamicUser= makes /home and /root read-only; the account must still be allowed to read "
                     "them (a 0700 home directory is not)")

    status = ENTRY.exit_status
    success = [str(int(c)) for c in status.success if int(c) != 0]
    prevent = [str(int(c)) for c in status.prevent_restart]
    lines: list[str] = [
        f"{MARKER} (install/update); an edit here is lost at the next update.",
        f"# Local changes that last: systemctl {'--user ' if scope.user else ''}edit {name}",
        f"# servicehost: state_dir = {_one_line(options.state_dir)}",
        f"# servicehost: account = {options.account}",
        f"# servicehost: start_mode = {options.start_mode}",
        "[Unit]",
        f"Description={_description(options)}",
    ]
    deps = [_dependency(d) for d in options.dependencies]
    after = ([] if scope.user else ["network.target"]) + deps
    if after:
        lines.append("After=" + " ".join(after))
    if deps:
        lines.append("Requires=" + " ".join(deps))
    lines += [
        f"StartLimitIntervalSec={start_limit_interval(options.restart_delay)}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        # The shell's own kill: /bin/kill (procps) is missing from minimal systems.
        'ExecReload=/bin/sh -c "kill -HUP ${MAINPID}"',
        f"WorkingDirectory={workdir or ('~' if scope.user else '/')}",
    ]
    lines += [f"Environment={env_assignment(k, v)}" for k, v in plain_env]
    for key, path in credentials:
        lines.append(f"LoadCredential={key}:{path}")
        lines.append(f'Environment="{key}_FILE=%d/{key}"')  # %d: the credentials directory
    if not scope.user:
        if user:
            lines.append(f"User={user}")
            if group:
                lines.append(f"Group={group}")
        else:
            lines.append("DynamicUser=yes")
    lines += [
        f"Restart={'on-failure' if options.restart else 'no'}",
        f"RestartSec={_span(options.restart_delay, '--restart-delay')}",
        f"SuccessExitStatus={' '.join(success)}",
        f"RestartPreventExitStatus={' '.join(prevent)}",
        f"TimeoutStartSec={_span(math.ceil(settings.start_timeout) + START_MARGIN, 'start_timeout')}",
        f"TimeoutStopSec={_span(math.ceil(options.stop_timeout) + STOP_MARGIN, 'stop timeout')}",
    ]
    if options.watchdog:
        lines.append(f"WatchdogSec={_span(options.watchdog, '--watchdog')}")
    lines += [
        "KillMode=mixed",
        f"LimitNOFILE={settings.limit_nofile}",
        f"RuntimeDirectory=servicehost/{options.name}",
        "RuntimeDirectoryMode=0700",
    ]
    if not scope.user:
        lines += [
            f"StateDirectory={state_directory}",
            "StateDirectoryMode=0750",
            f"LogsDirectory={log_directory}",
            "LogsDirectoryMode=0750",
        ]
        lines += [f"ReadWritePaths={p}" for p in read_write]
    lines.append("UMask=0027")
    if scope.user:
        lines += ["NoNewPrivileges=yes"]
    else:
        lines.append("# Hardening: relax one line with a drop-in (systemctl edit) if the service needs it")
        for key, value in HARDENING:
            if key == "ProtectHome":
                value = protect_home
            elif key == "PrivateTmp":
                value = private_tmp
            lines.append(f"{key}={value}")
    lines += ["", "[Install]", f"WantedBy={scope.wanted_by}", ""]
    return Unit(name, "\n".join(lines), tuple(notes), tuple(credentials))


def read_meta(text: str) -> dict[str, str]:
    """What servicehost recorded in a unit it wrote (``# servicehost: key = value`` lines), plus
    the timeouts it rendered."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"# servicehost: (\w+) = ?(.*)", line):
            out[m[1]] = m[2]
        elif m := re.fullmatch(r"(TimeoutStartSec|TimeoutStopSec)=(\d+)(s|ms)", line):
            out[m[1]] = str(int(m[2]) / (1000 if m[3] == "ms" else 1))
    return out


# -- the settings the installed service will see ------------------------------------------------------
def effective_setting(name: str, options: InstallOptions, command: Sequence[str]) -> Any:
    """The value of host setting ``name`` the installed service will load: its flag in ``command``,
    else ``SERVICEHOST_<NAME>`` in ``--env``, else the config file's key, else the default (the
    precedence of config.load). Bad values raise ConfigError now rather than at the first start."""
    spec = {s.name: s for s in config_mod.specs(config_mod.HostConfig)}[name]
    raw: str | None = None
    config_file = options.config_file
    for i, word in enumerate(command):
        for flag, target in ((spec.flag, "value"), ("--config", "config")):
            value = None
            if word == flag and i + 1 < len(command):
                value = command[i + 1]
            elif word.startswith(flag + "="):
                value = word[len(flag) + 1:]
            if value is not None:
                if target == "value":
                    raw = value
                else:
                    config_file = value
    if raw is not None:
        return config_mod.convert(spec, raw, "the service's command line", spec.flag)
    env = dict(options.environment)
    if spec.env in env:
        return config_mod.convert(spec, env[spec.env], "--env", spec.env)
    if config_file:
        data = config_mod.read_toml(Path(config_file))
        if name in data:
            return config_mod.convert(spec, data[name], f"config file {config_file}")
    return spec.default


# -- the manager -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interpreter:
    """What the service's interpreter reports about itself (run once at install)."""

    paths: tuple[str, ...]
    package: str


def probe_interpreter(command: Sequence[str], environment: Sequence[tuple[str, str]]) -> Interpreter:
    """Run the service's interpreter as the unit will (cwd /, the unit's environment) and ask where
    it and servicehost live. UsageError when it cannot import servicehost."""
    script = ("import json, os, sys\n"
              "import servicehost\n"
              "print(json.dumps({'paths': [os.path.realpath(sys.executable), sys.prefix, sys.base_prefix]"
              " + [p for p in sys.path if p], 'package': os.path.dirname(servicehost.__file__)}))")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    env.update((k, v) for k, v in environment if not v.startswith("@/"))
    try:
        proc = subprocess.run([command[0], "-c", script], cwd="/", env=env, stdin=subprocess.DEVNULL, check=False,
                              capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)
    except OSError as exc:
        raise UsageError(f"the service's interpreter {command[0]} cannot run: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"the service's interpreter {command[0]} did not answer within {SYSTEMCTL_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(f"the service's interpreter {command[0]} cannot import servicehost ({last}): install "
                         "servicehost into that environment, or run install with the interpreter that has it")
    data = json.loads(proc.stdout)
    return Interpreter(tuple(p for p in data["paths"] if os.path.exists(p)), data["package"])


def code_paths(command: Sequence[str], options: InstallOptions) -> list[str]:
    """The files the service reads at start besides its interpreter: the ``run`` target's file
    and the config file (not the state dir: systemd makes that one for the account)."""
    out = [options.config_file] if options.config_file else []
    for i, word in enumerate(command[:-1]):
        if word == "run":
            out.append(command[i + 1].partition(".py:")[0] + (".py" if ".py:" in command[i + 1] else ""))
        elif word == "--config":
            out.append(command[i + 1])
    return [p for p in dict.fromkeys(out) if p.startswith("/")]


def _may(st: os.stat_result, uid: int | None, gids: set[int], bits: int) -> bool:
    """Whether an account may ``bits`` (4 read, 2 write, 1 exec) on a file (ACLs aside).
    ``uid`` None: an account that owns nothing (DynamicUser=)."""
    if uid == 0:
        return True
    if uid is not None and st.st_uid == uid:
        return (st.st_mode >> 6) & bits == bits
    if st.st_gid in gids:
        return (st.st_mode >> 3) & bits == bits
    return st.st_mode & bits == bits


def unreachable(path: str, account: str) -> str | None:
    """Why ``account`` ("" = DynamicUser=) cannot read ``path`` (None: it can), from permissions."""
    user, group = split_account(account)
    uid: int | None = None
    gids: set[int] = set()
    if user:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            return f"there is no account {user!r}"
        uid = pw.pw_uid
        gids = {pw.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
        if group:
            with contextlib.suppress(KeyError):
                gids.add(grp.getgrnam(group).gr_gid)
    p = Path(path)
    for parent in reversed(p.parents):
        try:
            st = os.stat(parent)
        except OSError:
            return None  # cannot tell; systemd will say
        if not _may(st, uid, gids, 1):
            return f"{parent} is mode {stat.S_IMODE(st.st_mode):04o} (owner uid {st.st_uid})"
    try:
        st = os.stat(p)
    except OSError:
        return None
    if not _may(st, uid, gids, 5 if stat.S_ISDIR(st.st_mode) else 4):
        return f"{p} is mode {stat.S_IMODE(st.st_mode):04o} (owner uid {st.st_uid})"
    return None


@dataclass
class Show:
    """``systemctl show`` of one unit, as a dict with typed helpers."""

    props: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.props.get(key, default)

    def int(self, key: str) -> int:
        try:
            return int(self.props.get(key, "0") or 0)
        except ValueError:
            return 0


class SystemctlTimeout(PlatformUnavailable):
    """systemctl (or journalctl) did not finish within the time allowed."""


SHOW_PROPS = ("LoadState", "LoadError", "ActiveState", "SubState", "Result", "MainPID", "NRestarts", "ExecMainCode",
              "ExecMainStatus", "ExecMainStartTimestampMonotonic", "StatusText", "UnitFileState", "FragmentPath")
_EXITED = re.compile(r"Main process exited, code=(exited|killed|dumped), status=(\d+)")


class SystemdManager(ChannelOperations):
    """install/update/remove/start/stop/restart/status/reload/logs through ``systemctl`` and
    ``journalctl``; pause/continue/control through the service's control channel.

    Every call blocks at most its ``wait`` (default: the unit's own timeout + WAIT_SLACK) and raises
    a ServiceHostError subclass saying what to fix.
    """

    name = "systemd"

    def __init__(self, scope: Scope | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.scope = scope or (SYSTEM if os.geteuid() == 0 else user_scope(self.env))

    # -- running systemctl --------------------------------------------------------------------------
    def _run(self, argv: list[str], *, timeout: float = SYSTEMCTL_TIMEOUT, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"}
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, check=False,
                                  timeout=timeout)
        except FileNotFoundError:
            raise PlatformUnavailable(f"{argv[0]} not found: install systemd (apt-get install systemd)") from None
        except subprocess.TimeoutExpired:
            raise SystemctlTimeout(f"{shlex.join(argv)} did not finish within {timeout:g}s") from None
        if check and proc.returncode != 0:
            said = " ".join(proc.stderr.split()) or "no output"
            raise PlatformUnavailable(f"{shlex.join(argv)} failed (exit {proc.returncode}): {said}")
        return proc

    def systemctl(self, *args: str, timeout: float = SYSTEMCTL_TIMEOUT, check: bool = True
                  ) -> subprocess.CompletedProcess[str]:
        return self._run([*self.scope.systemctl, "--no-pager", *args], timeout=timeout, check=check)

    def show(self, unit: str) -> Show:
        proc = self.systemctl("show", unit, "-p", ",".join(SHOW_PROPS))
        props = dict(line.partition("=")[::2] for line in proc.stdout.splitlines() if "=" in line)
        return Show(props)

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    # -- unit files ---------------------------------------------------------------------------------
    def unit_path(self, name: str) -> Path:
        return self.scope.unit_dir / unit_name(name)

    def _installed(self, name: str) -> tuple[Path, dict[str, str]]:
        path = self.unit_path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{name} is not installed under systemd (no {path}): install it first, or give "
                             "the right --name") from None
        if not text.startswith(MARKER):
            raise UsageError(f"{path} was not written by servicehost; it is left alone")
        return path, read_meta(text)

    def render(self, options: InstallOptions, command: list[str]) -> Unit:
        """The unit for ``options``, after every check that needs this machine: the interpreter can
        import servicehost, the account exists and can read the code, credential files exist."""
        render_unit(options, command, scope=self.scope)  # every pure check first: nothing here is slow
        user, group = split_account(options.account)
        if user and not self.scope.user:
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise UsageError(f"--username {user}: no such account on this machine; create it first "
                                 "(useradd --system) or leave --username out for a DynamicUser") from None
            if group:
                try:
                    grp.getgrnam(group)
                except KeyError:
                    raise UsageError(f"--username {options.account}: no group {group!r} on this machine") from None
        start_timeout = effective_setting("start_timeout", options, command)
        log_file = str(effective_setting("log_file", options, command))
        log_dir = ""
        if log_file and log_file.lower() != "none":
            parent = os.path.dirname(os.path.abspath(log_file))
            if not (options.state_dir and _under(parent, (options.state_dir,))):
                log_dir = parent
        probe = probe_interpreter(command, options.environment)
        needed = [*probe.paths, probe.package]
        needed += [w for w in command[1:] if w.startswith("/") and os.path.exists(w)]
        unit = render_unit(options, command, scope=self.scope, settings=UnitSettings(
            start_timeout=start_timeout, paths=tuple(dict.fromkeys(needed)), log_dir=log_dir))
        if not self.scope.user:
            who = f"account {user}" if user else "a DynamicUser= account (any unprivileged uid)"
            for path in [command[0], probe.package, *code_paths(command, options)]:
                if os.path.exists(path) and (why := unreachable(path, options.account)):
                    raise UsageError(
                        f"{who} cannot read {path}: {why}. Use an interpreter and code outside such directories "
                        "(e.g. a venv made with /usr/bin/python3 under /opt or /srv), or install with --username "
                        "of an account that can read them")
        for key, path in unit.credentials:
            Secret(key, path).read()  # ConfigError (one line, exit 2) if missing, unreadable, not a file
        return unit

    def _write(self, unit: Unit) -> Path:
        path = self.scope.unit_dir / unit.name
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(unit.text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logs.systemd_unit_written(log, unit.name, path)
        for note in unit.notes:
            logs.systemd_hardening_relaxed(log, unit.name, note)
        return path

    def _prepare_dirs(self, options: InstallOptions) -> None:
        """A state dir outside /var/lib (ReadWritePaths=) must exist, owned by the account."""
        user, group = split_account(options.account)
        if self.scope.user or not user or not options.state_dir or _under(options.state_dir, ("/var/lib",)):
            return
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
        state = Path(options.state_dir)
        state.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.chown(state, pw.pw_uid, gid)

    def _loaded_or_undo(self, unit: Unit, path: Path, previous: str | None) -> None:
        show = self.show(unit.name)
        if show.get("LoadState") not in ("loaded", "masked"):
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(previous, encoding="utf-8")
            self.daemon_reload()
            raise ConfigError(f"unit {path}", None, "a unit systemd loads",
                              f"LoadState={show.get('LoadState')} ({show.get('LoadError') or 'no reason given'}); "
                              "it was not installed")

    def _apply_start_mode(self, unit: str, mode: str) -> None:
        if mode == "disabled":
            self.systemctl("disable", unit)
            self.systemctl("mask", unit)
            return
        if self.show(unit).get("LoadState") == "masked":
            self.systemctl("unmask", unit)
        self.systemctl("enable" if mode == "auto" else "disable", unit)

    # -- Manager ------------------------------------------------------------------------------------
    def install(self, options: InstallOptions, command: list[str]) -> None:
        """Write the unit, daemon-reload, enable (auto) or mask (disabled). Does not start it."""
        unit = self.render(options, command)
        path = self.scope.unit_dir / unit.name
        if path.exists():
            raise UsageError(f"{options.name} is already installed under systemd ({path}): use update, or remove "
                             "it first")
        existing = self.show(unit.name)
        if existing.get("LoadState") not in ("not-found", "") and existing.get("FragmentPath") != str(path):
            raise UsageError(f"a unit {unit.name} already exists ({existing.get('FragmentPath') or existing.get('LoadState')}); "
                             "choose another --name")
        self._prepare_dirs(options)
        self._write(unit)
        self.daemon_reload()
        self._loaded_or_undo(unit, path, None)
        self._apply_start_mode(unit.name, options.start_mode)

    def update(self, options: InstallOptions, command: list[str]) -> None:
        """Rewrite the unit and daemon-reload; a running service keeps its old settings until it is
        restarted (never restarted here)."""
        path, _ = self._installed(options.name)
        unit = self.render(options, command)
        previous = path.read_text(encoding="utf-8")
        self._prepare_dirs(options)
        self._write(unit)
        self.daemon_reload()
        self._loaded_or_undo(unit, path, previous)
        self._apply_start_mode(unit.name, options.start_mode)
        if self.show(unit.name).get("ActiveState") in ("active", "activating", "reloading"):
            logs.systemd_restart_to_apply(log, unit.name)

    def remove(self, name: str, *, purge: bool = False) -> None:
        """Stop, disable, unmask and delete the unit; keep its state and logs unless ``purge``."""
        path, meta = self._installed(name)
        unit = unit_name(name)
        try:
            self.stop(name)
        except StopIncomplete as exc:
            logs.systemd_stop_incomplete(log, unit, exc)
        if self.show(unit).get("LoadState") == "masked":
            self.systemctl("unmask", unit)
        self.systemctl("disable", unit)
        if purge:
            what = ["--what=state", "--what=logs", "--what=runtime", "--what=cache"]
            self.systemctl("clean", *what, unit)
        state = meta.get("state_dir", "")
        path.unlink()
        self.daemon_reload()
        self.systemctl("reset-failed", unit, check=False)
        if not purge:
            logs.systemd_data_kept(log, unit, state or f"/var/lib/servicehost/{name}")
        elif state and not _under(state, ("/var/lib",)):
            logs.systemd_data_kept(log, unit, state)  # a directory systemd does not own: never rm -rf'd here

    def _wait_for(self, meta: Mapping[str, str], key: str, wait: float | None) -> float:
        if wait is not None:
            return wait
        return float(meta.get(key) or 90) + WAIT_SLACK

    def start(self, name: str, *, args: Sequence[str] = (), wait: float | None = None) -> None:
        """``systemctl start``: returns once the service sent READY=1 (every service is ready)."""
        if args:
            raise UsageError("systemd cannot pass start arguments to a service; use --env or a config file")
        _, meta = self._installed(name)
        unit = unit_name(name)
        show = self.show(unit)
        if show.get("LoadState") == "masked":
            raise UsageError(f"{name} is disabled (masked): enable it first with: servicehost update --start manual "
                             "(or auto)")
        if show.get("ActiveState") == "failed":
            self.systemctl("reset-failed", unit, check=False)  # an admin's start also lifts the start limit
        if wait == 0:  # queue the start and return, as the SCM's StartService does
            self.systemctl("start", "--no-block", unit)
            return
        limit = self._wait_for(meta, "TimeoutStartSec", wait)
        try:
            proc = self.systemctl("start", unit, timeout=limit, check=False)
        except SystemctlTimeout:
            raise StartupError(f"{name} is not ready after {limit:g}s; systemd may still be starting it: see "
                               f"servicehost status, journalctl -u {unit}") from None
        if proc.returncode != 0:
            raise StartupError(f"{name} did not start: {self._why(unit)}")

    def _why(self, unit: str) -> str:
        show = self.show(unit)
        code, status = show.int("ExecMainCode"), show.int("ExecMainStatus")
        how = ""
        if code == 1:
            how = f", exit status {_exit_text(status)}"
        elif code in (2, 3):
            how = f", killed by signal {_signal_name(status)}"
        return (f"systemd says {show.get('ActiveState')}/{show.get('SubState')} (result {show.get('Result')}{how}); "
                f"see: {shlex.join([*self.scope.journalctl, '-u', unit, '-n', '50'])}")

    def stop(self, name: str, *, wait: float | None = None) -> None:
        """``systemctl stop``: SIGTERM, the graceful drain (EXTEND_TIMEOUT_USEC keeps systemd waiting
        until the stop deadline), exit. StopIncomplete when work was left or it had to be killed."""
        _, meta = self._installed(name)
        unit = unit_name(name)
        if self.show(unit).get("ActiveState") in ("inactive", "failed"):
            return
        if wait == 0:  # queue the stop and return, as the SCM's ControlService(STOP) does
            self.systemctl("stop", "--no-block", unit)
            return
        limit = self._wait_for(meta, "TimeoutStopSec", wait)
        try:
            proc = self.systemctl("stop", unit, timeout=limit, check=False)
        except SystemctlTimeout:
            raise StopIncomplete(f"{name} is still stopping after {limit:g}s; systemd kills it at TimeoutStopSec= "
                                 "(see servicehost status)") from None
        if proc.returncode != 0:
            raise PlatformUnavailable(f"systemctl stop {unit} failed: {' '.join(proc.stderr.split()) or 'no output'}")
        show = self.show(unit)
        if show.get("Result") == "timeout":
            raise StopIncomplete(f"{name} was killed after TimeoutStopSec=: {self._why(unit)}")
        if show.int("ExecMainCode") == 1 and show.int("ExecMainStatus") == ExitCode.STOP_INCOMPLETE:
            raise StopIncomplete(f"{name} stopped at its deadline with work unfinished (exit 4): see "
                                 f"{shlex.join([*self.scope.journalctl, '-u', unit, '-n', '50'])}")

    def restart(self, name: str, *, wait: float | None = None) -> None:
        """``systemctl restart``: stop (graceful) then start; returns once it is ready again."""
        _, meta = self._installed(name)
        unit = unit_name(name)
        limit = self._wait_for(meta, "TimeoutStopSec", wait) + self._wait_for(meta, "TimeoutStartSec", wait)
        try:
            proc = self.systemctl("restart", unit, timeout=limit, check=False)
        except SystemctlTimeout:
            raise StartupError(f"{name} is not ready again after {limit:g}s: see servicehost status") from None
        if proc.returncode != 0:
            raise StartupError(f"{name} did not restart: {self._why(unit)}")

    def status(self, name: str) -> ServiceStatus:
        unit = unit_name(name)
        path = self.unit_path(name)
        if not path.is_file():
            return ServiceStatus(name, self.name, "not-installed", detail={"unit": str(path)})
        show = self.show(unit)
        active = show.get("ActiveState")
        status_text = show.get("StatusText")
        state = {"active": "running", "reloading": "running", "activating": "starting",
                 "deactivating": "stopping", "inactive": "stopped", "failed": "failed"}.get(active, "unknown")
        if state == "running" and status_text.split(";")[0] in ("paused", "pausing"):
            state = "paused"
        pid = show.int("MainPID") or None
        started = show.int("ExecMainStartTimestampMonotonic")
        uptime = max(0.0, time.monotonic() - started / 1e6) if pid and started else None
        detail = {"unit": str(path), "enabled": show.get("UnitFileState") or "unknown",
                  "substate": show.get("SubState"), "result": show.get("Result")}
        if status_text:
            detail["status"] = status_text
        detail["logs"] = shlex.join([*self.scope.journalctl, "-u", unit])
        return ServiceStatus(name, self.name, state, pid=pid, uptime=uptime, restarts=show.int("NRestarts"),
                             last_exit=self._last_exit(unit, show), detail=detail)

    def _last_exit(self, unit: str, show: Show) -> int | None:
        """The last exit of the main process: exit code, or minus the signal that killed it."""
        code, status = show.int("ExecMainCode"), show.int("ExecMainStatus")
        if code:
            return status if code == 1 else -status
        # Running again after a restart: systemd keeps the old exit only in the journal.
        proc = self._run([*self.scope.journalctl, "-u", unit, "-o", "cat", "-n", "500", "--no-pager"], check=False)
        found = None
        for found in _EXITED.finditer(proc.stdout):
            pass
        if found is None:
            return None
        return int(found[2]) if found[1] == "exited" else -int(found[2])

    def _client(self, name: str) -> ControlClient:
        unit = unit_name(name)
        uids = {0, os.geteuid()}
        pid = self.show(unit).int("MainPID")
        if pid:
            with contextlib.suppress(OSError):
                uids.add(os.stat(f"/proc/{pid}").st_uid)
        path = socket_path(name, {"SERVICEHOST_RUNTIME_DIR": str(self.scope.runtime_base(self.env))})
        return ControlClient(path, server_uids=frozenset(uids))

    def _check(self, name: str) -> None:
        self._installed(name)

    def logs(self, name: str, size: int = 16384) -> str:
        """About the last ``size`` bytes of the service's journal (``journalctl -u``), whole lines."""
        self._installed(name)
        lines = max(20, size // 40)  # journalctl counts lines; ask for enough, then keep ``size`` bytes
        proc = self._run([*self.scope.journalctl, "-u", unit_name(name), "-n", str(lines), "--no-pager",
                          "-o", "short-iso"])
        text = proc.stdout
        if len(text) > size:
            cut = text.find("\n", len(text) - size)
            text = text[cut + 1:] if cut >= 0 else text[-size:]
        return text


def _exit_text(status: int) -> str:
    try:
        return f"{status} ({ExitCode(status).name})"
    except ValueError:
        return str(status)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


# -- the platform ------------------------------------------------------------------------------------
class SystemdPlatform:
    """Run under systemd (notifications + signals + control channel); install into systemd."""

    name = "systemd"

    def __init__(self, booted_marker: Path = BOOTED_MARKER) -> None:
        self.booted_marker = booted_marker

    def detect(self, env: Mapping[str, str]) -> str | None:
        if env.get("SUPERVISOR_ENABLED"):
            return None  # a program of a supervisord (which may itself run under systemd)
        if env.get("NOTIFY_SOCKET"):
            return "NOTIFY_SOCKET set by systemd"
        if env.get("INVOCATION_ID") and stderr_is_journal(env):
            return "INVOCATION_ID set and stderr is the journal"
        return None

    def installable(self, env: Mapping[str, str]) -> str | None:
        if not sys.platform.startswith("linux") or not self.booted_marker.exists():
            return None
        if os.geteuid() == 0:
            return f"systemd runs as PID 1 ({self.booted_marker} exists): a system unit"
        runtime = env.get("XDG_RUNTIME_DIR")
        if runtime and (Path(runtime) / "systemd").is_dir():
            return "systemd runs as PID 1 and you have a user manager: a user unit (systemctl --user)"
        return None

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Run ``host`` until it stops, telling systemd about it (module docstring). Main thread."""
        env = os.environ
        use_journal_prefixes(env)
        notifier = Notifier.from_env(env)
        watchdog = watchdog_interval(env)
        session = NotifySession(host, notifier, watchdog=watchdog) if notifier is not None else None
        logs.systemd_notifying(log, notifier.address.replace("\0", "@") if notifier else "nowhere",
                               f"{watchdog * 2:g}s" if watchdog else "off")
        with contextlib.ExitStack() as stack:
            if notifier is not None:
                stack.callback(notifier.close)
            if session is not None:
                stack.enter_context(session)
            stack.enter_context(_control_channel(host, env, session))
            # signals_to_host calls request_stop() and reload(): reload gets RELOADING=1/READY=1.
            with signals_to_host(cast(Host, _SignalTarget(host, session))):
                code = host.run()
        return code

    def manager(self) -> SystemdManager:
        return SystemdManager()


@contextlib.contextmanager
def _control_channel(host: Host, env: Mapping[str, str], session: NotifySession | None) -> Iterator[None]:
    """Serve the control channel in the unit's RuntimeDirectory (``$RUNTIME_DIRECTORY``); without
    one it is optional: a service in a hand-written unit still runs, without pause/continue."""
    runtime = (env.get("RUNTIME_DIRECTORY") or "").split(":")[0]
    path = Path(runtime) / "control.sock" if runtime else socket_path(host.name)

    def reload(req: Request) -> Any:
        if session is None:
            req.host.reload()
        else:
            session.reload()
        return CONTROL_COMMANDS["ping"](req)

    server = ControlServer(host, path, commands={**CONTROL_COMMANDS, "reload": reload})
    try:
        server.start()
    except (ServiceHostError, OSError) as exc:
        logs.systemd_control_unavailable(log, exc)
        yield
        return
    try:
        yield
    finally:
        server.close()


__all__ = [
    "HARDENING",
    "JournalFormatter",
    "Notifier",
    "NotifySession",
    "Scope",
    "SystemdManager",
    "SystemdPlatform",
    "Unit",
    "UnitSettings",
    "effective_setting",
    "exec_line",
    "exec_word",
    "looks_secret",
    "render_unit",
    "unit_name",
]

