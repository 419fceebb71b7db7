"""Install-time checks: what only this machine can tell before a unit is written.

:func:`render_unit` (``unit.py``) refuses what cannot be said in a unit; :func:`checked_unit` adds
what needs the machine: the service's interpreter imports servicehost (:func:`probe_interpreter`,
run as the unit will run it), the account exists and may read the interpreter and the code
(:func:`unreachable`, from permissions), and each credential file exists. Hardening that would
hide the service's own files is relaxed from what the probe reports. A failed check raises
UsageError or ConfigError naming the fix; nothing is written.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import UsageError
from ..base import InstallOptions, Secret
from .unit import Scope, Unit, UnitSettings, effective_setting, render_unit, split_account, under

#: The interpreter probe must answer within this many seconds.
PROBE_TIMEOUT = 60.0


def checked_unit(options: InstallOptions, command: Sequence[str], scope: Scope) -> Unit:
    """The unit for ``options``, after every check that needs this machine: the interpreter can
    import servicehost, the account exists and can read the code, credential files exist."""
    render_unit(options, command, scope=scope)  # every pure check first: nothing here is slow
    user, group = split_account(options.account)
    if user and not scope.user:
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
        if not (options.state_dir and under(parent, (options.state_dir,))):
            log_dir = parent
    probe = probe_interpreter(command, options.environment)
    needed = [*probe.paths, probe.package]
    needed += [w for w in command[1:] if w.startswith("/") and os.path.exists(w)]
    unit = render_unit(options, command, scope=scope, settings=UnitSettings(
        start_timeout=start_timeout, paths=tuple(dict.fromkeys(needed)), log_dir=log_dir,
        systemd_version=systemd_version(scope)))
    if not scope.user:
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


def systemd_version(scope: Scope) -> int | None:
    """The version of the systemd manager that will load the unit (``systemctl show -p Version``;
    None when it does not say)."""
    try:
        proc = subprocess.run([*scope.systemctl, "show", "--property=Version", "--value"], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, check=False, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(proc.stdout) if proc.returncode == 0 else None


def parse_version(text: str) -> int | None:
    """systemd's major version from what it calls its version ("252.22-1~deb12u1", "v255" → 252, 255)."""
    match = re.match(r"\s*v?(\d+)", text)
    return int(match[1]) if match else None


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
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except OSError as exc:
        raise UsageError(f"the service's interpreter {command[0]} cannot run: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"the service's interpreter {command[0]} did not answer within {PROBE_TIMEOUT:g}s") from None
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


__all__ = ["PROBE_TIMEOUT", "Interpreter", "checked_unit", "code_paths", "parse_version", "probe_interpreter",
           "systemd_version", "unreachable"]
