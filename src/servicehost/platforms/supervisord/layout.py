"""Which supervisord services are installed into, and where its files and servicehost's are.

:func:`discover` (first match wins):

1. ``$SERVICEHOST_SUPERVISORD_CONF``: the main config of a supervisord you run yourself; programs
   go into the directory of its first ``[include] files = DIR/*.conf``.
2. ``$SERVICEHOST_SUPERVISORD_HOME``: servicehost's own supervisord, kept in that directory.
3. Debian's ``/etc/supervisor/supervisord.conf`` (package ``supervisor``), as root: its
   ``conf.d``; its socket (``/var/run/supervisor.sock``, mode 0700).
4. servicehost's own supervisord in ``/var/lib/servicehost/supervisord`` (root) or
   ``$XDG_STATE_HOME/servicehost/supervisord``: config, ``programs/*.conf``, socket (mode 0700,
   no password anywhere), pid file, ``logs/`` (rotated), ``credentials/`` and the boot unit.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ..control import check_name

ENV_CONF = "SERVICEHOST_SUPERVISORD_CONF"
ENV_HOME = "SERVICEHOST_SUPERVISORD_HOME"
DEBIAN_CONF = Path("/etc/supervisor/supervisord.conf")
SYSTEMD_MARKER = Path("/run/systemd/system")  # sd_booted(): present only when systemd is PID 1
BOOT_UNIT = "servicehost-supervisord.service"
#: Counts the service's starts since the manager last started it (in its runtime directory).
STARTS_FILE = "starts"
#: The folder (in the supervisord's home) holding each service's copies of its secrets: the service
#: gets ``NAME_FILE`` = ``<home>/credentials/<service>/NAME`` (folder 0700, file 0400, both owned by
#: its account), never the secret itself (base.split_environment).
CREDENTIALS = "credentials"

__all__ = [
    "BOOT_UNIT", "CREDENTIALS", "DEBIAN_CONF", "ENV_CONF", "ENV_HOME", "STARTS_FILE", "SYSTEMD_MARKER",
    "Layout", "default_home", "discover", "layout_from_conf", "owned_layout",
]


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
