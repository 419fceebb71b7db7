"""What supervisord reads, rendered from the install options (pure: reads and writes no file):
servicehost's own supervisord config, one ``[program:NAME]`` file per service, and the systemd
unit that runs servicehost's own supervisord at boot.

Exit codes: ``exitcodes`` = the success and no-restart codes of ``ENTRY.exit_status`` with
``autorestart=unexpected``, so a crash (1), a hang (5) or a signal restarts the service and a
clean stop (0, 4), bad config (2) or a failed start (3) does not. ``startsecs=0`` makes that hold
from the first instant: with ``startsecs=N`` supervisord calls any exit within N seconds "too
quick" and retries it ``startretries`` times whatever its code (a failed start, exit 3, would run
four times). Readiness comes from the service itself (its control channel), never from
supervisord's RUNNING. ``startretries`` then only counts spawn errors (the command cannot be run).

Restarts wait: supervisord restarts at once, so servicehost waits itself (``backoff.py``,
``platforms/restarts.py``): the program is told ``--restart-delay`` as ``SERVICEHOST_RESTART_DELAY``.
It is also told which supervisord it belongs to (``SERVICEHOST_SUPERVISORD_HOME``, or
``SERVICEHOST_SUPERVISORD_CONF`` for one servicehost does not own), so servicehost run inside it
(a script that installs itself) reaches the same supervisord, and it runs in its state directory
(``directory=``) unless ``--workdir`` says otherwise. How each install option maps:
``ENTRY.options`` in this package's ``__init__``.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UsageError
from ..base import InstallOptions, refusals, split_environment
from ..control import check_name
from ..record import InstallRecord, with_copies
from . import ENTRY
from .backoff import ENV_RESTART_DELAY
from .layout import BOOT_UNIT, ENV_CONF, ENV_HOME, Layout

if TYPE_CHECKING:  # pwd does not exist on Windows
    import pwd

#: How every program file servicehost writes begins (``list`` tells them from an admin's own).
PROGRAM_MARKER = "; Written by servicehost"
#: supervisord sends SIGKILL this many seconds after the graceful stop time.
STOP_MARGIN = 5
#: Seconds a program must stay up before supervisord calls it RUNNING: 0, so exitcodes decide from the
#: first instant (readiness comes from the service; see the module docstring).
START_SECS = 0
#: Tries when the command cannot be spawned at all (supervisord then waits 1, 2, 3 s between them).
START_RETRIES = 3
LOG_MAX_BYTES = "10MB"
LOG_BACKUPS = 5

__all__ = [
    "LOG_BACKUPS", "LOG_MAX_BYTES", "PROGRAM_MARKER", "START_RETRIES", "START_SECS", "STOP_MARGIN",
    "boot_hint", "exit_codes", "read_program", "render_boot_unit", "render_program", "render_supervisord_conf",
    "stop_wait_secs",
]


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
    assert status is not None  # supervisord is a manager: its ENTRY declares one
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
    given = {k for k, _ in given_env}
    env: list[tuple[str, str]] = [("SERVICEHOST_RUNTIME_DIR", str(runtime_dir))]
    if layout.owned:  # servicehost run inside the program reaches this same supervisord
        env.append((ENV_HOME, str(layout.home)))
    else:
        env.append((ENV_CONF, str(layout.conf)))
    if options.restart:
        env.append((ENV_RESTART_DELAY, f"{options.restart_delay:g}"))
    env = [(k, v) for k, v in env if k not in given]
    if account is not None:  # supervisord switches uid only: give the account its own identity
        env += [(k, v) for k, v in (("HOME", account.pw_dir), ("USER", account.pw_name),
                                    ("LOGNAME", account.pw_name)) if k not in given]
    env += given_env
    workdir = options.working_directory or options.state_dir  # never supervisord's own (/)
    about = " ".join(filter(None, [options.display_name, options.description])).replace("\n", " ")
    record = InstallRecord(with_copies(options, layout.credentials_dir(name)), tuple(command))  # names the copies
    lines = [
        f"{PROGRAM_MARKER} install; change it with: servicehost update (then restart)",
        f"; {about}" if about else None,
        f"; servicehost: runtime_dir = {runtime_dir}",
        f"; servicehost: state_dir = {options.state_dir}",
        f"; servicehost: stop_timeout = {options.stop_timeout:g}",
        f"; servicehost: account = {options.account}",
        f"; servicehost: record = {record.to_json()}",
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
        f"directory = {_ini(workdir, '--workdir')}" if workdir else None,
        f"environment = {_environment(env)}",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def read_program(path: Path) -> dict[str, str]:
    """What servicehost recorded in a program file (``; servicehost: key = value`` lines; ``record``
    is the install record, ``record.py``), plus its ``stopwaitsecs``."""
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
