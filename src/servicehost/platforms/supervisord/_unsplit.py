"""supervisord: the embedded default manager where no init system runs (containers, CI, WSL).

Running (:class:`SupervisordPlatform`): detected by ``SUPERVISOR_ENABLED`` and
``SUPERVISOR_PROCESS_NAME``, which supervisord sets for its programs. ``run`` is the foreground
signal handling (stopsignal TERM; SIGHUP reloads) plus the control channel (``control.py``) and
its ready marker, plus a start counter in the runtime directory (supervisord counts no restarts).
supervisord cannot hold RUNNING back until a program is ready, so ``status`` says ``starting``
until the service itself says it is ready through the control channel.

Installing (:class:`SupervisordManager`): the fallback where no systemd runs as PID 1 (not on
Windows). It writes one ``[program:NAME]`` file into a supervisord's include directory and
controls it through supervisord's XML-RPC interface on its unix socket. Which supervisord
(:func:`discover`, first match wins):

1. ``$SERVICEHOST_SUPERVISORD_CONF``: the main config of a supervisord you run yourself; programs
   go into the directory of its first ``[include] files = DIR/*.conf``.
2. ``$SERVICEHOST_SUPERVISORD_HOME``: servicehost's own supervisord, kept in that directory.
3. Debian's ``/etc/supervisor/supervisord.conf`` (package ``supervisor``), as root: its
   ``conf.d``; its socket (``/var/run/supervisor.sock``, mode 0700).
4. servicehost's own supervisord in ``/var/lib/servicehost/supervisord`` (root) or
   ``$XDG_STATE_HOME/servicehost/supervisord``: config, ``programs/*.conf``, socket (mode 0700,
   no password anywhere), pid file, and ``logs/`` (rotated). It is started on demand by
   ``install``/``start``. It does not come back after a reboot by itself: ``install`` writes
   ``servicehost-supervisord.service`` (a systemd unit running ``supervisord -n``) beside it and
   says how to enable it, or to use ``supervisord -n -c CONF`` as a container's entrypoint.

How each install option maps: ``ENTRY.options`` in this package's ``__init__``; exit codes: ``exitcodes`` =
the success and no-restart codes of ``ENTRY.exit_status`` with
``autorestart=unexpected``, so a crash (1), a hang (5) or a signal restarts the service and a
clean stop (0, 4), bad config (2) or a failed start (3) does not.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import importlib.util
import logging
import math
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import logs
from ...errors import (
    ConfigError,
    ExitCode,
    PlatformUnavailable,
    StartupError,
    StopIncomplete,
    UsageError,
)
from ...host import Host
from ...stopping import Deadline
from . import ENTRY
from ..base import InstallOptions, Secret, ServiceStatus, refusals, split_environment, wait_until
from ..control import (
    ChannelOperations,
    ControlChannelError,
    ControlClient,
    ControlServer,
    check_name,
    runtime_base,
    socket_path,
)
from ..foreground import signals_to_host

if TYPE_CHECKING:  # pwd does not exist on Windows, where this module is imported by detect()
    import pwd

log = logging.getLogger("servicehost.platforms.supervisord")

ENV_CONF = "SERVICEHOST_SUPERVISORD_CONF"
ENV_HOME = "SERVICEHOST_SUPERVISORD_HOME"
DEBIAN_CONF = Path("/etc/supervisor/supervisord.conf")
SYSTEMD_MARKER = Path("/run/systemd/system")  # sd_booted(): present only when systemd is PID 1
BOOT_UNIT = "servicehost-supervisord.service"
#: supervisord sends SIGKILL this many seconds after the graceful stop time.
STOP_MARGIN = 5
#: Seconds a program must stay up before supervisord calls it RUNNING (readiness comes from the service).
START_SECS = 1
START_RETRIES = 3
LOG_MAX_BYTES = "10MB"
LOG_BACKUPS = 5
#: Default wait of ``start`` for the service to say it is ready (hang guard, not a speed claim).
START_WAIT = 90.0
RPC_TIMEOUT = 30.0
#: Counts the service's starts since the manager last started it (in its runtime directory).
STARTS_FILE = "starts"
#: Environment passed to a supervisord servicehost starts: its programs inherit it, so nothing else
#: from the admin's shell (tokens, keys) leaks into services.
SUPERVISORD_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
#: The folder (in the supervisord's home) holding each service's copies of its secrets: the service
#: gets ``NAME_FILE`` = ``<home>/credentials/<service>/NAME`` (folder 0700, file 0400, both owned by
#: its account), never the secret itself (base.split_environment).
CREDENTIALS = "credentials"

# supervisor.xmlrpc.Faults (not imported: the manager may talk to a supervisord of another Python).
BAD_NAME, NO_FILE, FAILED, SPAWN_ERROR, ALREADY_STARTED, NOT_RUNNING, ALREADY_ADDED, STILL_RUNNING, \
    CANT_REREAD = 10, 20, 30, 50, 60, 70, 90, 91, 92
STOPPED_STATES = ("STOPPED", "EXITED", "FATAL")


class SupervisordNotRunning(PlatformUnavailable):
    """Nothing answers on the supervisord socket."""


# -- which supervisord ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """One supervisord servicehost installs into, and servicehost's own files beside it."""

    conf: Path
    """supervisord's main config file."""
    programs_dir: Path
    """Where ``[program:NAME]`` files go (included by ``conf``)."""
    socket: Path
    """supervisord's XML-RPC unix socket."""
    home: Path
    """servicehost's files for this supervisord: ``logs/``, ``run/``, the boot unit."""
    owned: bool
    """True: servicehost wrote ``conf`` and starts this supervisord itself."""
    origin: str
    """Why this supervisord was chosen (shown by ``status``)."""
    log_dir: Path
    """Where the programs' rotated logs go (supervisord's ``childlogdir`` where it has one)."""

    def program_file(self, name: str) -> Path:
        return self.programs_dir / f"{check_name(name)}.conf"

    def credentials_dir(self, name: str) -> Path:
        """Copies of the service's ``--env NAME=@file`` secrets (0700, owned by its account)."""
        return self.home / CREDENTIALS / check_name(name)

    @property
    def pidfile(self) -> Path:
        return self.home / "supervisord.pid"

    @property
    def boot_unit(self) -> Path:
        return self.home / BOOT_UNIT


def default_home(env: Mapping[str, str], euid: int) -> Path:
    if env.get(ENV_HOME):
        return Path(env[ENV_HOME])
    if euid == 0:
        return Path("/var/lib/servicehost/supervisord")
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "servicehost" / "supervisord"


def owned_layout(home: Path, origin: str = "servicehost's own") -> Layout:
    home = Path(home).absolute()
    return Layout(home / "supervisord.conf", home / "programs", home / "supervisor.sock", home, True, origin,
                  home / "logs")


def layout_from_conf(text: str, conf: Path, home: Path, origin: str) -> Layout | None:
    """The layout of an existing supervisord, from its config text (pure: reads no file).

    None when the config has no unix socket, no rpcinterface or no ``DIR/*.conf`` include.
    ConfigError when its socket wants a password (servicehost keeps no password in a file).
    """
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    try:
        parser.read_string(text, str(conf))
    except configparser.Error as exc:
        raise ConfigError(f"supervisord config {conf}", None, "a valid ini file", exc) from None
    here = str(conf.parent)

    def value(section: str, key: str) -> str | None:
        if not parser.has_option(section, key):
            return None
        return parser.get(section, key).replace("%(here)s", here).strip()

    sock = value("unix_http_server", "file")
    if not sock or not parser.has_section("rpcinterface:supervisor"):
        return None
    if value("unix_http_server", "username") or value("unix_http_server", "password"):
        raise ConfigError(
            f"supervisord config {conf}", "[unix_http_server] username/password",
            "no password (servicehost never reads passwords from files; the socket's mode 0700 already "
            "limits it to its owner)", "a password: remove username and password there")
    programs = None
    for pattern in (value("include", "files") or "").split():
        path = Path(pattern) if Path(pattern).is_absolute() else conf.parent / pattern
        if path.name == "*.conf" and "*" not in str(path.parent):
            programs = path.parent
            break
    if programs is None:
        return None
    child_logs = value("supervisord", "childlogdir")
    logs_at = Path(child_logs) if child_logs and Path(child_logs).is_absolute() else home / "logs"
    return Layout(conf, programs, Path(sock), home, False, origin, logs_at)


def discover(env: Mapping[str, str] | None = None, euid: int | None = None, *,
             debian_conf: Path = DEBIAN_CONF) -> Layout:
    """The supervisord to install into (see the module docstring for the order)."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    home = default_home(env, euid)
    if env.get(ENV_CONF):
        conf = Path(env[ENV_CONF]).absolute()
        text = _read_conf(conf, f"{ENV_CONF}={conf}")
        layout = layout_from_conf(text, conf, home, f"given by {ENV_CONF}")
        if layout is None:
            raise ConfigError(
                f"{ENV_CONF}={conf}", None, "a supervisord config with [unix_http_server] file=, "
                "[rpcinterface:supervisor] and [include] files = DIR/*.conf", "none of them all")
        return layout
    if env.get(ENV_HOME):
        return owned_layout(home, f"servicehost's own, in {ENV_HOME}")
    if euid == 0 and debian_conf.is_file():
        layout = layout_from_conf(_read_conf(debian_conf, str(debian_conf)), debian_conf, home,
                                  "Debian's (package supervisor)")
        if layout is not None:
            return layout
    return owned_layout(home)


def _read_conf(path: Path, source: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, None, "a readable supervisord config", exc.strerror or exc) from None


# -- rendering --------------------------------------------------------------------------------------
def _ini(text: str, what: str, *, show: bool = True) -> str:
    """``text`` safe as one supervisord config value: no line breaks, ``%`` escaped.
    ``show=False`` keeps the value out of the error (an environment value may be a secret)."""
    if "\n" in text or "\r" in text or "\x00" in text:
        shown = f" {text!r}" if show else ""
        raise UsageError(f"{what}{shown}: a line break cannot go into a supervisord config")
    return text.replace("%", "%%")


def render_supervisord_conf(layout: Layout) -> str:
    """servicehost's own supervisord config: socket mode 0700 and no password anywhere."""
    for path in (layout.home,):
        if any(c.isspace() for c in str(path)):
            raise UsageError(f"supervisord home {path}: a path with spaces cannot be an [include] pattern")
    home = _ini(str(layout.home), "supervisord home")
    sock = _ini(str(layout.socket), "socket")
    return f"""\
; servicehost's own supervisord. Written by servicehost (install); programs: {home}/programs/*.conf
; Runs in the foreground (a container's entrypoint, or {BOOT_UNIT}) with: supervisord -n -c THIS_FILE
[unix_http_server]
file = {sock}
; only this account (and root) may connect; there is no username or password
chmod = 0700

[supervisord]
logfile = {home}/logs/supervisord.log
logfile_maxbytes = {LOG_MAX_BYTES}
logfile_backups = {LOG_BACKUPS}
pidfile = {home}/supervisord.pid
childlogdir = {home}/logs

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{sock}

[include]
files = {home}/programs/*.conf
"""


def exit_codes() -> tuple[int, ...]:
    """supervisord's ``exitcodes``: every code that must not restart the service."""
    status = ENTRY.exit_status
    return tuple(sorted({int(c) for c in status.success + status.prevent_restart}))


def stop_wait_secs(stop_timeout: float) -> int:
    """``stopwaitsecs``: the graceful stop time plus a margin, so SIGKILL never cuts a drain short."""
    return math.ceil(stop_timeout) + STOP_MARGIN


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _environment(pairs: Sequence[tuple[str, str]]) -> str:
    """``KEY="value",...`` as supervisord's (non-POSIX shlex) parser reads it back."""
    out = []
    for key, value in pairs:
        if not _ENV_KEY.fullmatch(key):
            raise UsageError(f"--env {key}=...: a variable name is letters, digits and _")
        if '"' in value or value.endswith("'") or value.startswith("'"):
            raise UsageError(f"--env {key}: supervisord cannot carry a value with a double quote or quoted in '")
        out.append(f'{key}="{_ini(value, f"--env {key}", show=False)}"')
    return ",".join(out)


def render_program(options: InstallOptions, command: Sequence[str], *, layout: Layout,
                   runtime_dir: Path, account: pwd.struct_passwd | None = None) -> str:
    """The ``[program:NAME]`` file for ``options`` (pure: reads and writes nothing)."""
    name = check_name(options.name)
    if options.start_mode not in ("auto", "manual") or options.dependencies:
        raise UsageError("supervisord cannot honour: " + "; ".join(refusals(options, "supervisord")))
    plain, secrets = split_environment(options.environment)
    given_env = plain + [(s.variable, str(layout.credentials_dir(name) / s.key)) for s in secrets]
    env: list[tuple[str, str]] = [("SERVICEHOST_RUNTIME_DIR", str(runtime_dir))]
    given = {k for k, _ in given_env}
    if account is not None:  # supervisord switches uid only: give the account its own identity
        env += [(k, v) for k, v in (("HOME", account.pw_dir), ("USER", account.pw_name),
                                    ("LOGNAME", account.pw_name)) if k not in given]
    env += given_env
    about = " ".join(filter(None, [options.display_name, options.description])).replace("\n", " ")
    lines = [
        "; Written by servicehost install; change it with: servicehost update (then restart)",
        f"; {about}" if about else None,
        f"; servicehost: runtime_dir = {runtime_dir}",
        f"; servicehost: state_dir = {options.state_dir}",
        f"; servicehost: stop_timeout = {options.stop_timeout:g}",
        f"; servicehost: account = {options.account}",
        f"[program:{name}]",
        f"command = {_ini(shlex.join(command), 'command')}",
        f"autostart = {'true' if options.start_mode == 'auto' else 'false'}",
        f"autorestart = {'unexpected' if options.restart else 'false'}",
        f"exitcodes = {','.join(str(c) for c in exit_codes())}",
        f"startsecs = {START_SECS}",
        f"startretries = {START_RETRIES}",
        "stopsignal = TERM",
        f"stopwaitsecs = {stop_wait_secs(options.stop_timeout)}",
        "stopasgroup = true",
        "killasgroup = true",
        "redirect_stderr = true",
        f"stdout_logfile = {_ini(str(layout.log_dir / (name + '.log')), 'log file')}",
        f"stdout_logfile_maxbytes = {LOG_MAX_BYTES}",
        f"stdout_logfile_backups = {LOG_BACKUPS}",
        f"user = {_ini(options.account, '--username')}" if options.account else None,
        f"directory = {_ini(options.working_directory, '--workdir')}" if options.working_directory else None,
        f"environment = {_environment(env)}",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def read_program(path: Path) -> dict[str, str]:
    """What servicehost recorded in a program file (``; servicehost: key = value`` lines),
    plus its ``stopwaitsecs``."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"; servicehost: (\w+) = (.*)", line):
            out[m[1]] = m[2]
        elif m := re.fullmatch(r"stopwaitsecs = (\d+)", line):
            out["stopwaitsecs"] = m[1]
    return out


def render_boot_unit(layout: Layout, python: str, stop_secs: int) -> str:
    """A systemd unit that runs servicehost's own supervisord at boot (``supervisord -n``)."""
    return f"""\
# Written by servicehost: runs the supervisord holding servicehost's programs at boot.
# Enable: cp {layout.boot_unit} /etc/systemd/system/ && systemctl enable --now {BOOT_UNIT}
[Unit]
Description=supervisord for servicehost services ({layout.home})
After=network.target

[Service]
ExecStart={shlex.join([python, "-m", "supervisor.supervisord", "-n", "-c", str(layout.conf)])}
# supervisord stops its programs (each within its stopwaitsecs) on SIGTERM
KillMode=mixed
TimeoutStopSec={stop_secs}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def boot_hint(layout: Layout, python: str) -> str | None:
    """How this supervisord comes back after a reboot (None: its package takes care of it)."""
    if layout.owned:
        foreground = shlex.join([python, "-m", "supervisor.supervisord", "-n", "-c", str(layout.conf)])
        return (f"supervisord does not come back after a reboot by itself: in a container make this the "
                f"entrypoint: {foreground}; on a machine with systemd: cp {layout.boot_unit} "
                f"/etc/systemd/system/ && systemctl enable {BOOT_UNIT}")
    if layout.origin.startswith("Debian"):
        return None  # the supervisor package enables supervisor.service
    return f"make sure the supervisord using {layout.conf} starts at boot"


def last_exit_from_log(text: str, name: str) -> int | None:
    """The last exit of program ``name`` in supervisord's main log: the code, or minus the signal."""
    rx = re.compile(rf"(?:exited|stopped): {re.escape(name)} \((?:exit status (\d+)|terminated by (SIG[A-Z0-9]+))")
    found = None
    for m in rx.finditer(text):
        found = m
    if found is None:
        return None
    if found[1] is not None:
        return int(found[1])
    try:
        return -int(signal.Signals[found[2]])
    except KeyError:
        return None


# -- XML-RPC over the unix socket -------------------------------------------------------------------
def _fault() -> type[Exception]:
    """xmlrpc.client.Fault, imported only where a call to supervisord can raise it."""
    import xmlrpc.client

    return xmlrpc.client.Fault


@functools.cache
def _unix_transport_class() -> type:
    """The stdlib XML-RPC transport over a unix socket, with a timeout (supervisor's own has none).
    Built on first use: xmlrpc/http.client are heavy imports a running service never needs."""
    import http.client
    import xmlrpc.client

    class UnixConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self._path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    class UnixTransport(xmlrpc.client.Transport):
        def __init__(self, path: Path, timeout: float) -> None:
            super().__init__()
            self._path, self._timeout = str(path), timeout

        def make_connection(self, host: Any) -> http.client.HTTPConnection:
            return UnixConnection(self._path, self._timeout)

    return UnixTransport


# -- the manager ------------------------------------------------------------------------------------
class SupervisordManager(ChannelOperations):
    """install/start/stop/status/... of programs in one supervisord (see :func:`discover`).

    Every call blocks at most its ``wait`` (or the defaults above) and raises a ServiceHostError
    subclass saying what to fix. pause/continue/control/reload go to the service's control channel.
    """

    name = "supervisord"

    def __init__(self, layout: Layout | None = None, *, env: Mapping[str, str] | None = None,
                 rpc_timeout: float = RPC_TIMEOUT) -> None:
        self.env = dict(os.environ if env is None else env)
        self.layout = layout or discover(self.env)
        self.rpc_timeout = rpc_timeout

    # -- talking to supervisord ---------------------------------------------------------------------
    def rpc(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``supervisor.METHOD`` (xmlrpc Faults pass through for the caller to read)."""
        import xmlrpc.client

        proxy = xmlrpc.client.ServerProxy(
            "http://localhost/RPC2", transport=_unix_transport_class()(self.layout.socket, timeout or self.rpc_timeout))
        try:
            return getattr(proxy.supervisor, method)(*args)
        except (FileNotFoundError, ConnectionRefusedError):
            raise SupervisordNotRunning(
                f"no supervisord answers on {self.layout.socket} ({self.layout.origin} supervisord, "
                f"config {self.layout.conf})") from None
        except PermissionError:
            raise PlatformUnavailable(
                f"not allowed to use supervisord's socket {self.layout.socket} (mode 0700): run this as "
                f"the user supervisord runs as (uid {_owner(self.layout.socket)})") from None
        except TimeoutError:
            raise PlatformUnavailable(
                f"supervisord on {self.layout.socket} did not answer {method} within "
                f"{timeout or self.rpc_timeout:g}s") from None

    def is_running(self) -> bool:
        try:
            return bool(self.rpc("getState", timeout=5.0).get("statename") == "RUNNING")
        except SupervisordNotRunning:
            return False

    def ensure_running(self, wait: float = 30.0) -> None:
        """Start this supervisord if nothing answers on its socket; wait until it is RUNNING."""
        if self.is_running():
            return
        self._check_socket_path()
        if self.layout.owned:
            self._prepare_owned()
            argv = self._supervisord_argv()
        elif self.layout.origin.startswith("Debian") and SYSTEMD_MARKER.exists() and shutil.which("systemctl"):
            argv = ["systemctl", "start", "supervisor"]
        else:
            argv = self._supervisord_argv()
        env = {k: self.env[k] for k in SUPERVISORD_ENV if k in self.env}
        env.setdefault("PATH", os.defpath)
        with tempfile.TemporaryFile() as out:
            # supervisord daemonizes: the first process exits once the daemon has forked, so the
            # output goes to a file (a pipe would stay open in the daemon and block us).
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                      cwd="/", timeout=wait)
            except subprocess.TimeoutExpired:
                raise PlatformUnavailable(f"{shlex.join(argv)} did not return within {wait:g}s") from None
            out.seek(0)
            said = out.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            raise PlatformUnavailable(
                f"could not start supervisord with {shlex.join(argv)} (exit {proc.returncode}): {said or 'no output'}")
        wait_until(self.is_running, Deadline.after(wait), lambda: PlatformUnavailable(
            f"supervisord started with {shlex.join(argv)} but does not answer on {self.layout.socket} "
            f"after {wait:g}s; see the logfile= named in {self.layout.conf}"))
        logs.supervisord_started(log, self.layout.origin, self.layout.conf)

    def _check_socket_path(self) -> None:
        if len(os.fsencode(self.layout.socket)) >= 108:
            raise ConfigError(f"supervisord socket {self.layout.socket}", None,
                              "a path of at most 107 bytes (a unix socket's limit)",
                              f"{len(os.fsencode(self.layout.socket))} bytes: choose a shorter {ENV_HOME}")

    def _supervisord_argv(self) -> list[str]:
        if importlib.util.find_spec("supervisor") is not None:
            return [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.layout.conf)]
        binary = shutil.which("supervisord")
        if binary is None or self.layout.owned:
            raise PlatformUnavailable(
                f"the supervisor package is not installed for {sys.executable}: "
                "pip install 'servicehost[supervisor]'")
        return [binary, "-c", str(self.layout.conf)]

    def _prepare_owned(self) -> None:
        layout = self.layout
        layout.home.mkdir(mode=0o755, parents=True, exist_ok=True)
        layout.programs_dir.mkdir(mode=0o700, exist_ok=True)  # program files may carry environment values
        layout.log_dir.mkdir(mode=0o750, exist_ok=True)
        text = render_supervisord_conf(layout)
        if not layout.conf.is_file() or layout.conf.read_text(encoding="utf-8") != text:
            _write_private(layout.conf, text)

    # -- program files ------------------------------------------------------------------------------
    def _installed(self, name: str) -> dict[str, str]:
        path = self.layout.program_file(name)
        if not path.is_file():
            raise UsageError(
                f"{name} is not installed under supervisord (no {path}; {self.layout.origin} supervisord): "
                "install it first, or give the right --name")
        return read_program(path)

    def _write_program(self, options: InstallOptions, command: list[str],
                       secrets: Sequence[tuple[Secret, bytes]] = ()) -> None:
        account = _account(options.account)
        if account is not None and account.pw_uid != os.geteuid():
            # supervisord (root) switches the program to the account: give it a runtime directory
            # on disk that survives reboots, prepared here, since it cannot create one under /run.
            base = self.layout.home / "run"
            base.mkdir(mode=0o755, parents=True, exist_ok=True)
            own = base / options.name
            own.mkdir(mode=0o700, exist_ok=True)
            os.chown(own, account.pw_uid, account.pw_gid)
            os.chmod(own, 0o700)
            if options.state_dir:
                state = Path(options.state_dir)
                state.mkdir(mode=0o750, parents=True, exist_ok=True)
                os.chown(state, account.pw_uid, account.pw_gid)
        else:
            base = runtime_base(self.env)
        self.layout.log_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        text = render_program(options, command, layout=self.layout, runtime_dir=base, account=account)
        self._store_secrets(options.name, secrets, account)  # the paths text names exist before supervisord reads it
        path = self.layout.program_file(options.name)
        self.layout.programs_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write_private(path, text)
        logs.supervisord_program_written(log, options.name, path)

    def _store_secrets(self, name: str, secrets: Sequence[tuple[Secret, bytes]],
                       account: pwd.struct_passwd | None) -> None:
        """Make ``credentials/<name>/`` hold exactly these secrets: each replaced atomically, created
        0400 and owned by ``account`` (else the installing user) in a 0700 folder it owns."""
        own = self.layout.credentials_dir(name)
        if not secrets:
            _remove_tree(own)
            return
        uid, gid = (account.pw_uid, account.pw_gid) if account is not None else (os.geteuid(), os.getegid())
        own.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(own.parent, 0o711)  # the accounts may pass through, not list who has secrets
        with contextlib.suppress(FileExistsError):
            own.mkdir(mode=0o700)
        if own.is_symlink() or not own.is_dir():
            raise UsageError(f"{own} is not a folder: remove it, then install again")
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.chown(own, uid, gid, follow_symlinks=False)
        os.chmod(own, 0o700)
        for secret, data in secrets:
            _write_secret(own / secret.key, data, uid, gid)
        keep = {secret.key for secret, _ in secrets}
        for old in own.iterdir():  # secrets no longer given, and leftovers of an interrupted write
            if old.name not in keep:
                old.unlink()
        if account is not None and (where := _unreachable(own, account)):
            raise UsageError(f"--env {secrets[0][0].key}=@...: account {account.pw_name} cannot reach its "
                             f"secrets in {own}: {where}; choose a supervisord home it can enter ({ENV_HOME})")

    def _reread(self, undo: Path | None = None) -> tuple[list[str], list[str], list[str]]:
        """Let supervisord re-read its config; with ``undo``, a refused file is removed again."""
        try:
            added, changed, removed = self.rpc("reloadConfig")[0]
        except _fault() as fault:
            if fault.faultCode != CANT_REREAD:
                raise
            if undo is not None:
                undo.unlink(missing_ok=True)
            raise ConfigError(f"supervisord ({self.layout.conf})", None, "a config it can read",
                              f"an error: {fault.faultString}") from None
        return added, changed, removed

    def _write_boot_unit(self) -> None:
        if not self.layout.owned:
            return
        longest = max([int(read_program(p).get("stopwaitsecs", 0) or 0)
                       for p in self.layout.programs_dir.glob("*.conf")] + [10])
        _write_private(self.layout.boot_unit, render_boot_unit(self.layout, sys.executable, longest + 30), 0o644)

    # -- Manager ------------------------------------------------------------------------------------
    def install(self, options: InstallOptions, command: list[str]) -> None:
        """Write ``[program:NAME]`` (autostart per start mode) and let supervisord read it; starts
        supervisord when it is not running. Does not start the service (``start`` does)."""
        path = self.layout.program_file(options.name)
        if path.exists():
            raise UsageError(f"{options.name} is already installed under supervisord ({path}): "
                             "use update, or remove it first")
        secrets = _read_secrets(options)  # a bad @file changes nothing
        self.ensure_running()
        try:
            self._write_program(options, command, secrets)
            self._reread(undo=path)
        except BaseException:
            path.unlink(missing_ok=True)
            _remove_tree(self.layout.credentials_dir(options.name))
            raise
        self._write_boot_unit()
        hint = boot_hint(self.layout, sys.executable)
        if hint:
            logs.supervisord_not_at_boot(log, hint)

    def update(self, options: InstallOptions, command: list[str]) -> None:
        """Rewrite the program file; supervisord applies it at the next ``restart`` (not now)."""
        self._installed(options.name)
        secrets = _read_secrets(options)  # a bad @file changes nothing
        self.ensure_running()
        self._write_program(options, command, secrets)
        self._reread()
        self._write_boot_unit()

    def remove(self, name: str, *, purge: bool = False) -> None:
        meta = self._installed(name)
        path = self.layout.program_file(name)
        if self.is_running():
            self.stop(name)
            with _fault_ok(BAD_NAME):
                self.rpc("removeProcessGroup", name)
            path.unlink()
            self._reread()
        else:
            path.unlink()
        _remove_tree(self.layout.credentials_dir(name))  # its secrets go with it, purge or not
        if purge:
            for target in [Path(meta.get("state_dir") or ""), Path(meta.get("runtime_dir") or "") / name]:
                if target.is_absolute() and len(target.parts) >= 3 and target.is_dir():
                    shutil.rmtree(target)
            for old in self.layout.log_dir.glob(f"{name}.log*"):
                old.unlink()

    def start(self, name: str, *, args: Sequence[str] = (), wait: float | None = None) -> None:
        """Start the program (applying a changed file) and wait until the service says it is ready
        (``wait=0``: supervisord has spawned it; ``status`` says ``starting`` until it is ready)."""
        if args:
            raise UsageError("supervisord cannot pass start arguments to a program; use --env or a config file")
        meta = self._installed(name)
        starts = Path(meta["runtime_dir"]) / name / STARTS_FILE
        if not self.is_running():
            starts.unlink(missing_ok=True)  # before supervisord autostarts it: this start counts as the first
            self.ensure_running()
        info = self._info(name)
        if info is None or info["statename"] in STOPPED_STATES:
            starts.unlink(missing_ok=True)
        self._apply(name, running=info is not None and info["statename"] not in STOPPED_STATES)
        try:
            with _fault_ok(ALREADY_STARTED):
                self.rpc("startProcess", name, False)  # spawns it and returns (wait=False)
        except _fault() as fault:
            if fault.faultCode != SPAWN_ERROR:
                raise
            info = self._info(name) or {}
            raise StartupError(f"{name} did not start: supervisord cannot spawn it ({info.get('spawnerr') or fault.faultString}); "
                               f"its log: {info.get('stdout_logfile')}") from None
        if wait != 0:
            self._wait_ready(name, meta, START_WAIT if wait is None else wait)

    def _apply(self, name: str, *, running: bool) -> None:
        added, changed, _ = self._reread()
        if name in changed and not running:
            with _fault_ok(BAD_NAME):
                self.rpc("removeProcessGroup", name)
            added.append(name)
        if name in added:
            with _fault_ok(ALREADY_ADDED):
                self.rpc("addProcessGroup", name)

    def _wait_ready(self, name: str, meta: Mapping[str, str], wait: float) -> None:
        """Until supervisord calls it RUNNING and the service itself says it is ready (StartupError
        as soon as it has stopped, or when ``wait`` has passed)."""
        deadline = Deadline.after(wait)
        state = "unknown"

        def ready() -> bool:
            nonlocal state
            info = self._info(name)
            state = info["statename"] if info else "not loaded"
            if info and state in STOPPED_STATES:
                why = info.get("spawnerr") or f"exit status {info.get('exitstatus')}"
                raise StartupError(
                    f"{name} did not start: supervisord says {state} ({why}); its log: "
                    f"{info.get('stdout_logfile')} (servicehost status --name {name})")
            if state != "RUNNING":
                return False
            client = self._client(name, meta, timeout=max(0.1, deadline.remaining(2.0) or 0.0))
            with contextlib.suppress(ControlChannelError):
                return bool(client.call("ping").get("ready"))
            return False

        wait_until(ready, deadline, lambda: StartupError(
            f"{name} is not ready after {wait:g}s (supervisord: {state}); it may still be starting: "
            f"see {self.layout.log_dir / (name + '.log')} and: servicehost status --name {name}"))

    def stop(self, name: str, *, wait: float | None = None) -> None:
        """Ask supervisord to stop the program (TERM, KILL after stopwaitsecs); wait until it has
        (``wait=0``: supervisord has sent TERM; ``status`` says ``stopping`` until it is gone)."""
        meta = self._installed(name)
        if not self.is_running():
            return  # nothing runs without its supervisord
        info = self._info(name)
        if info is None or info["statename"] in STOPPED_STATES:
            return
        with _fault_ok(NOT_RUNNING):
            self.rpc("stopProcess", name, False)  # sends stopsignal and returns (wait=False)
        if wait == 0:
            return
        limit = float(meta.get("stopwaitsecs") or 10) + 10 if wait is None else wait
        state = info["statename"]

        def stopped() -> bool:
            nonlocal state
            now = self._info(name)
            state = now["statename"] if now else "not loaded"
            return now is None or state in STOPPED_STATES

        wait_until(stopped, Deadline.after(limit), lambda: StopIncomplete(
            f"{name} is still {state} after {limit:g}s; supervisord kills it at stopwaitsecs"))

    def restart(self, name: str, *, wait: float | None = None) -> None:
        """Stop, then start. supervisord cannot queue a start behind a stop: with ``wait=0`` the
        stop is waited for (its default), then the start is queued."""
        self.stop(name, wait=None if wait == 0 else wait)
        self.start(name, wait=wait)

    def status(self, name: str) -> ServiceStatus:
        """The same record as every manager; ``running`` only once the service said it is ready."""
        path = self.layout.program_file(name)
        detail = {"supervisord": f"{self.layout.conf} ({self.layout.origin})"}
        if not path.is_file():
            return ServiceStatus(name, self.name, "not-installed", detail=detail)
        meta = read_program(path)
        starts = _read_int(Path(meta.get("runtime_dir") or "/nonexistent") / name / STARTS_FILE)
        restarts = None if starts is None else max(0, starts - 1)
        try:
            info = self._info(name)
        except SupervisordNotRunning:
            detail["note"] = "supervisord is not running (servicehost start starts it)"
            return ServiceStatus(name, self.name, "stopped", restarts=restarts, detail=detail)
        if info is None:
            detail["note"] = "installed; supervisord has not loaded it yet (servicehost start loads it)"
            return ServiceStatus(name, self.name, "stopped", restarts=restarts, detail=detail)
        detail["log"] = info.get("stdout_logfile", "")
        state = info["statename"]
        pid = info["pid"] or None
        uptime = float(info["now"] - info["start"]) if pid and info["start"] else None
        shown = {"STARTING": "starting", "BACKOFF": "starting", "STOPPING": "stopping", "STOPPED": "stopped",
                 "FATAL": "failed", "UNKNOWN": "unknown"}.get(state, "unknown")
        if state == "EXITED":  # ended by itself: a clean stop, or a failure not worth a restart
            shown = "stopped" if info["exitstatus"] in ENTRY.exit_status.success else "failed"
        if state == "BACKOFF" and info.get("spawnerr"):
            detail["note"] = info["spawnerr"]
        if state == "RUNNING":
            shown, detail["ready"] = self._service_state(name, meta)
        last = self._last_exit(name)
        if last is None and state in ("EXITED", "STOPPED"):
            last = info["exitstatus"]
        if last is not None and last < 0:
            detail["last exit"] = f"killed by {signal.Signals(-last).name}"
        return ServiceStatus(name, self.name, shown, pid=pid, uptime=uptime, restarts=restarts,
                             last_exit=last, detail=detail)

    def _service_state(self, name: str, meta: Mapping[str, str]) -> tuple[str, str]:
        try:
            answer = self._client(name, meta, timeout=5.0).call("ping")
        except ControlChannelError as exc:
            return "starting", f"no ({exc})"
        host_state = answer.get("state", "")
        if not answer.get("ready"):
            return ("stopping" if host_state in ("stopping", "stopped", "failed") else "starting"), f"no ({host_state})"
        return ("paused" if host_state in ("pausing", "paused") else "running"), f"yes ({host_state})"

    def _last_exit(self, name: str) -> int | None:
        try:
            text = self.rpc("readLog", -65536, 0)
        except (_fault(), PlatformUnavailable):
            return None  # no main log file (syslog): fall back to supervisord's exit status
        return last_exit_from_log(text, name)

    def _info(self, name: str) -> dict[str, Any] | None:
        try:
            return self.rpc("getProcessInfo", name)  # type: ignore[no-any-return]
        except _fault() as fault:
            if fault.faultCode == BAD_NAME:
                return None
            raise

    def _client(self, name: str, meta: Mapping[str, str] | None = None, timeout: float = 10.0) -> ControlClient:
        meta = meta if meta is not None else self._installed(name)
        uids = {0, os.geteuid()}
        account = _account(meta.get("account", ""))
        if account is not None:
            uids.add(account.pw_uid)
        path = socket_path(name, {"SERVICEHOST_RUNTIME_DIR": meta["runtime_dir"]})
        return ControlClient(path, timeout=timeout, server_uids=frozenset(uids))

    def logs(self, name: str, size: int = 16384) -> str:
        """The last ``size`` bytes of the program's (rotated) log, through supervisord."""
        self._installed(name)
        text, _, _ = self.rpc("tailProcessStdoutLog", name, 0, size)
        return text  # type: ignore[no-any-return]


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically, created with ``mode`` (never briefly wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_secrets(options: InstallOptions) -> list[tuple[Secret, bytes]]:
    """Every ``--env NAME=@file`` secret's bytes (ConfigError, one line, for a file that cannot be read)."""
    return [(secret, secret.read()) for secret in split_environment(options.environment)[1]]


def _write_secret(path: Path, data: bytes, uid: int, gid: int) -> None:
    """Replace ``path`` atomically by a file holding ``data``, mode 0400, owned by ``uid:gid`` from
    its creation on (never readable by anyone else, not even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
    try:
        try:
            if (uid, gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o400)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _unreachable(path: Path, account: pwd.struct_passwd) -> str | None:
    """Why ``account`` cannot enter every folder above ``path`` (None: it can)."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for folder in reversed(path.parents):
        st = folder.stat()
        if account.pw_uid == 0:
            continue
        bit = 0o100 if st.st_uid == account.pw_uid else 0o010 if st.st_gid in groups else 0o001
        if not st.st_mode & bit:
            return f"{folder} (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}) does not let it in"
    return None


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _account(name: str) -> pwd.struct_passwd | None:
    if not name:
        return None
    import pwd

    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--username {name}: no such account on this machine") from None
    if account.pw_uid != os.geteuid() and os.geteuid() != 0:
        raise UsageError(f"--username {name}: supervisord can switch to another account only when it runs "
                         "as root; install as root, or leave --username out to run as yourself")
    return account


def _owner(path: Path) -> str:
    try:
        return str(path.stat().st_uid)
    except OSError:
        return "unknown"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _fault_ok(*codes: int) -> Iterator[None]:
    """Treat these supervisord faults as success (already started, already stopped, ...)."""
    try:
        yield
    except _fault() as fault:
        if fault.faultCode not in codes:
            raise


# -- the platform -----------------------------------------------------------------------------------
def record_start(directory: Path) -> int:
    """Count one more start of the service in its runtime directory; the new count."""
    path = directory / STARTS_FILE
    count = (_read_int(path) or 0) + 1
    try:
        _write_private(path, f"{count}\n", 0o644)
    except OSError as exc:  # status then shows restarts as unknown; the service runs on
        logs.notify_failed(log, exc)
    return count


class SupervisordPlatform:
    """Run under supervisord: signals + the control channel; install into supervisord."""

    name = "supervisord"

    def __init__(self, systemd_marker: Path = SYSTEMD_MARKER) -> None:
        self.systemd_marker = systemd_marker

    def detect(self, env: Mapping[str, str]) -> str | None:
        if env.get("SUPERVISOR_ENABLED") and env.get("SUPERVISOR_PROCESS_NAME"):
            return f"SUPERVISOR_PROCESS_NAME={env['SUPERVISOR_PROCESS_NAME']} set by supervisord"
        return None

    def installable(self, env: Mapping[str, str]) -> str | None:
        if sys.platform == "win32":
            return None  # supervisord does not run on Windows at all
        if self.systemd_marker.exists():
            return None  # systemd runs as PID 1: install there
        return f"no systemd runs as PID 1 (no {self.systemd_marker}): supervisord is the fallback"

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Serve the control channel, count this start, route signals; run the host until it stops.
        Raises StartupError (exit 3) when the control channel cannot be set up safely."""
        name = os.environ.get("SUPERVISOR_PROCESS_NAME") or host.name
        server = ControlServer(host, socket_path(name))
        server.start()
        try:
            record_start(server.path.parent)
            with signals_to_host(host):
                return host.run()
        finally:
            server.close()

    def manager(self) -> SupervisordManager:
        return SupervisordManager()
