"""The contracts every platform (service manager) builds on.

* :class:`Platform` — what a platform does: say whether it is present, and run a host under its
  manager (translating OS events into host calls and host events into notifications).
* :class:`Manager` — install/update/remove/start/stop/restart/status/pause/continue/control/reload
  of an installed service, one implementation per manager; the CLI commands call only this.
* :class:`InstallOptions` — the one set of install options for every manager, and
  :data:`OPTION_SUPPORT`, per manager, how each option maps — or why it is refused.
* :class:`ServiceStatus` — the status record every manager's ``status`` fills
  (a field the manager cannot tell stays ``None`` and prints ``unknown``).
* :func:`launch_command` — the exact command line a manager launches.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import ExitCode
from ..host import Host


class Platform(Protocol):
    """A service manager servicehost can run under."""

    name: str

    def detect(self, env: Mapping[str, str]) -> str | None:
        """Why this process runs under this manager right now (None: it does not)."""

    def installable(self, env: Mapping[str, str]) -> str | None:
        """Why services can be installed into this manager from here (None: they cannot)."""

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Run ``host`` until it stops; return its exit code. Called on the main thread."""

    def manager(self) -> Manager:
        """The install/start/status interface (PlatformUnavailable if there is none here)."""


class Manager(Protocol):
    """Controls installed services under one service manager. Every call blocks at most ``wait``
    seconds (None: the manager's own default; 0: queue the request and return, as the SCM's
    StartService/ControlService do) and raises a ServiceHostError subclass with a
    message saying what to fix; ``cli``/``manage`` print it."""

    name: str

    def install(self, options: InstallOptions, command: list[str]) -> None:
        """Register the service to run ``command`` (from :func:`launch_command`)."""

    def update(self, options: InstallOptions, command: list[str]) -> None:
        """Change an installed service; never restarts it silently."""

    def remove(self, name: str, *, purge: bool = False) -> None:
        """Stop (if running) and unregister; keep its data unless ``purge``."""

    def start(self, name: str, *, args: Sequence[str] = (), wait: float | None = None) -> None: ...

    def stop(self, name: str, *, wait: float | None = None) -> None: ...

    def restart(self, name: str, *, wait: float | None = None) -> None: ...

    def status(self, name: str) -> ServiceStatus: ...

    def pause(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def control(self, name: str, code: int) -> None: ...

    def reload(self, name: str) -> None: ...

    def logs(self, name: str, size: int = 16384) -> str:
        """The last ``size`` bytes (about) of the service's log, as the manager keeps it."""


START_MODES = ("auto", "delayed", "manual", "disabled")


@dataclass(frozen=True, kw_only=True)
class InstallOptions:
    """Install options, one set for every manager (mapped per manager by :data:`OPTION_SUPPORT`)."""

    name: str
    """Service name (the SCM key, the unit name, the supervisord program name)."""
    display_name: str = ""
    description: str = ""
    start_mode: str = "auto"
    """auto | delayed | manual | disabled."""
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


@dataclass(frozen=True)
class Refused:
    """An option a manager has no equivalent for: install stops with this reason."""

    reason: str


#: Per option and manager: how it maps (a string naming the manager's form) or why it is refused.
#: A value is checked only when it differs from the default; the manager issues render from it.
OPTION_SUPPORT: dict[str, dict[str, str | Refused]] = {
    "start_mode": {
        "windows": "StartType (auto/manual/disabled) + DELAYED_AUTO_START_INFO for delayed",
        "systemd": "enable (auto) / no enable (manual) / mask (disabled); delayed: " + "refused",
        "supervisord": "autostart=true (auto) / false (manual); delayed, disabled: refused",
    },
    "start_mode=delayed": {
        "windows": "DELAYED_AUTO_START_INFO",
        "systemd": Refused("systemd has no delayed start; order the unit After= another instead"),
        "supervisord": Refused("supervisord has no delayed start; use manual and start it later"),
    },
    "start_mode=disabled": {
        "windows": "SERVICE_DISABLED",
        "systemd": "systemctl mask",
        "supervisord": Refused("supervisord cannot disable a program; remove it instead"),
    },
    "dependencies": {
        "windows": "lpDependencies (StopServiceWithDeps stops dependents first)",
        "systemd": "Requires= + After=",
        "supervisord": Refused("supervisord has no dependencies; use priority= ordering by hand"),
    },
    "account": {
        "windows": r"virtual account NT SERVICE\<name> by default, or --username (password from a prompt/stdin)",
        "systemd": "DynamicUser=yes by default, or User=",
        "supervisord": "user= (supervisord must run as root to switch)",
    },
    "environment": {"windows": r"Services\<name>\Environment", "systemd": "Environment=", "supervisord": "environment="},
    "working_directory": {"windows": "set by the host at start", "systemd": "WorkingDirectory=", "supervisord": "directory="},
    "stop_timeout": {
        "windows": "STOP_PENDING wait hints + PRESHUTDOWN_INFO",
        "systemd": "TimeoutStopSec= (stop_timeout + margin)",
        "supervisord": "stopwaitsecs= (stop_timeout + margin)",
    },
    "restart": {
        "windows": "failure actions + FAILURE_ACTIONS_FLAG",
        "systemd": "Restart=on-failure",
        "supervisord": "autorestart=unexpected",
    },
    "restart_delay": {
        "windows": "failure action delays (restart_delay, then doubled)",
        "systemd": "RestartSec=",
        "supervisord": "supervisord restarts at once; a non-default restart_delay is refused",
    },
    "restart_delay!=default": {
        "windows": "failure action delays",
        "systemd": "RestartSec=",
        "supervisord": Refused("supervisord has no restart delay (it restarts at once, backing off only on failed starts)"),
    },
    "watchdog": {
        "windows": "the host exits with HUNG (5) and failure actions restart it",
        "systemd": "WatchdogSec= fed only while workers heartbeat",
        "supervisord": "the host exits with HUNG (5); autorestart restarts it",
    },
}


def refusals(options: InstallOptions, manager: str) -> list[str]:
    """Every reason ``manager`` cannot honour ``options`` (empty: it can)."""
    keys = []
    if options.start_mode in ("delayed", "disabled"):
        keys.append(f"start_mode={options.start_mode}")
    if options.dependencies:
        keys.append("dependencies")
    if options.restart_delay != InstallOptions.__dataclass_fields__["restart_delay"].default:
        keys.append("restart_delay!=default")
    out = []
    for key in keys:
        rule = OPTION_SUPPORT[key].get(manager)
        if isinstance(rule, Refused):
            out.append(f"{key}: {rule.reason}")
    return out


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` shows, the same on every manager. ``None`` prints as ``unknown``."""

    name: str
    manager: str
    state: str
    """running | starting | stopping | stopped | paused | failed | not-installed | unknown."""
    pid: int | None = None
    uptime: float | None = None
    restarts: int | None = None
    last_exit: int | None = None
    detail: Mapping[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        def show(value: object) -> str:
            return "unknown" if value is None else str(value)

        last = "unknown" if self.last_exit is None else _exit_name(self.last_exit)
        uptime = "unknown" if self.uptime is None else f"{self.uptime:.0f}s"
        return [
            f"name:      {self.name}", f"manager:   {self.manager}", f"state:     {self.state}",
            f"pid:       {show(self.pid)}", f"uptime:    {uptime}", f"restarts:  {show(self.restarts)}",
            f"last exit: {last}",
        ] + [f"{k}: {v}" for k, v in self.detail.items()]


def _exit_name(code: int) -> str:
    try:
        return f"{code} ({ExitCode(code).name})"
    except ValueError:
        return str(code)


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
