"""The unit file: what systemd reads about a service, rendered from the install options.

:func:`render_unit` is a pure function of the options and the command (it reads nothing and writes
nothing): every refusal (a secret in the environment, a path systemd cannot say, an option systemd
has no form for) is raised before anything is written. :func:`read_meta` reads back what a unit
recorded (its ``# servicehost: record = ...`` line is the install record, ``record.py``: the
options and command every later command reads back by the service's name);
:func:`effective_setting` says which host setting the installed service will load.
The checks that need this machine (the interpreter, the account, file permissions) are in
``checks.py``; writing, loading and enabling the unit is the manager's (``manager.py``).

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
    restart              Restart=on-failure, RestartSec=restart_delay, StartLimitBurst/IntervalSec;
                         systemd >= 254 (UnitSettings.systemd_version) also RestartSteps= and
                         RestartMaxDelaySec=, so a crash loop's restarts wait longer each time up
                         to 60 s (platforms/restarts.py); before 254 each waits RestartSec=
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

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ... import config as config_mod
from ...config import looks_secret
from ...errors import ConfigError, UsageError
from ..base import InstallOptions, refusals
from ..base import split_environment as split_secrets
from .. import restarts
from ..control import check_name
from ..record import InstallRecord
from . import ENTRY

SYSTEM_UNIT_DIR = Path("/usr/local/lib/systemd/system")
MARKER = "# Written by servicehost"
#: Seconds added to stop_timeout for TimeoutStopSec=: the host returns at its deadline, then exits.
STOP_MARGIN = 10
#: Seconds added to start_timeout for TimeoutStartSec=: the interpreter starts and imports first.
START_MARGIN = 15
START_LIMIT_BURST = 5
LIMIT_NOFILE = 65536
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
    systemd_version: int | None = None
    """The version of the systemd that loads the unit (None: unknown): keys newer than 252 (the
    oldest tested) are written only when it has them."""


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


def one_line(text: str) -> str:
    """``text`` with its line breaks as spaces (a unit comment, an sd_notify STATUS=)."""
    return " ".join(text.split("\n"))


def under(path: str, roots: Sequence[str]) -> str | None:
    """The first of ``roots`` that ``path`` is, or lies below; None when none is."""
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def start_limit_interval(restart_delay: float) -> int:
    """StartLimitIntervalSec=: long enough that START_LIMIT_BURST quick failures in a row hit it."""
    return max(60, math.ceil(START_LIMIT_BURST * (restart_delay + 1) * 2))


def _restart_steps(options: InstallOptions, version: int | None) -> list[str]:
    """RestartSteps= and RestartMaxDelaySec= (systemd >= 254): each restart in a row waits longer,
    from RestartSec= up to the cap, as under every manager (``platforms/restarts.py``)."""
    count = restarts.steps(options.restart_delay)
    if not options.restart or not count or version is None or version < restarts.SYSTEMD_STEPS_VERSION:
        return []
    return [f"RestartSteps={count}",
            f"RestartMaxDelaySec={_span(restarts.max_delay(options.restart_delay), '--restart-delay')}"]


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
        raise UsageError(f"start mode {str(options.start_mode)!r}: systemd knows auto, manual and disabled")
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
        if under(options.state_dir, ("/var/lib",)) and options.state_dir != "/var/lib":
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
        if under(settings.log_dir, ("/var/log",)) and settings.log_dir != "/var/log":
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
    home_hits = sorted({p for p in seen if p and under(p, HOME_ROOTS)})
    tmp_hits = sorted({p for p in seen if p and under(p, TMP_ROOTS)})
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
    assert status is not None  # systemd is a manager: its ENTRY declares one
    success = [str(int(c)) for c in status.success if int(c) != 0]
    prevent = [str(int(c)) for c in status.prevent_restart]
    lines: list[str] = [
        f"{MARKER} (install/update); an edit here is lost at the next update.",
        f"# Local changes that last: systemctl {'--user ' if scope.user else ''}edit {name}",
        f"# servicehost: state_dir = {one_line(options.state_dir)}",
        f"# servicehost: account = {options.account}",
        f"# servicehost: start_mode = {options.start_mode}",
        f"# servicehost: record = {InstallRecord(options, tuple(command)).to_json()}",
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
        *_restart_steps(options, settings.systemd_version),
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


__all__ = [
    "HARDENING",
    "HOME_ROOTS",
    "LIMIT_NOFILE",
    "MARKER",
    "START_LIMIT_BURST",
    "START_MARGIN",
    "STOP_MARGIN",
    "SYSTEM",
    "SYSTEM_UNIT_DIR",
    "TMP_ROOTS",
    "Scope",
    "Unit",
    "UnitSettings",
    "effective_setting",
    "env_assignment",
    "exec_line",
    "exec_word",
    "looks_secret",
    "one_line",
    "read_meta",
    "render_unit",
    "split_account",
    "split_environment",
    "start_limit_interval",
    "under",
    "unit_name",
    "user_scope",
]
