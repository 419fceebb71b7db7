"""Managing installed services: :class:`SystemdManager` runs ``systemctl`` and ``journalctl``.

Installing: as root, a system unit in ``/usr/local/lib/systemd/system`` (not /etc/systemd/system:
that stays free for ``systemctl edit`` drop-ins, enable links and the mask that ``--start disabled``
needs); as another user, a user unit (``unit.py`` says what differs).
``daemon-reload`` follows every change; ``update`` never restarts; ``remove`` stops first and keeps
the state and logs unless ``--purge`` (``systemctl clean``).

Every call blocks at most its ``wait`` (default: the unit's own timeout + WAIT_SLACK); ``wait=0``
queues the job (``--no-block``) and returns. pause / continue / control go through the service's
control channel (``control.py``), since systemd has no verbs for them.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import logs
from ...errors import ConfigError, ExitCode, PlatformUnavailable, StartupError, StopIncomplete, UsageError
from ..base import InstallOptions, ServiceStatus
from ..record import InstallRecord
from ..control import STATUS_TIMEOUT, ControlChannelError, socket_path
from ..control_client import ChannelOperations, ControlClient, status_fields
from .checks import checked_unit
from .unit import MARKER, SYSTEM, Scope, Unit, read_meta, split_account, under, unit_name, user_scope

log = logging.getLogger("servicehost.platforms.systemd")

SYSTEMCTL_TIMEOUT = 60.0
#: Extra wait of start/stop beyond the unit's own timeouts, before the CLI gives up waiting.
WAIT_SLACK = 30.0


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
              "ExecMainStatus", "ExecMainStartTimestampMonotonic", "StatusText", "UnitFileState", "FragmentPath",
              "User", "DynamicUser")
#: systemd's UnitFileState → the start mode ``status`` shows (``enable`` is auto, ``mask`` disabled).
UNIT_FILE_START_MODES = {"enabled": "auto", "enabled-runtime": "auto", "disabled": "manual", "static": "manual",
                         "indirect": "manual", "masked": "disabled", "masked-runtime": "disabled"}


def _exits(unit: str) -> re.Pattern[str]:
    """systemd's journal lines about a run of ``unit``: its start, its main process's exit (not
    logged for a clean exit 0), its end."""
    u = re.escape(unit)
    return re.compile(rf"^{u}: Main process exited, code=(exited|killed|dumped), status=(\d+)|"
                      rf"^{u}: (Deactivated successfully)|^(Starting) {u}\b", re.M)


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

    def installed(self) -> list[str]:
        """The units servicehost wrote in this scope's unit directory."""
        try:
            paths = sorted(self.scope.unit_dir.glob("*.service"))
        except OSError:
            return []
        return [path.name.removesuffix(".service") for path in paths if _written_by_servicehost(path)]

    def is_installed(self, name: str) -> bool:
        try:
            return _written_by_servicehost(self.unit_path(name))
        except UsageError:  # not a name systemd can hold (unit_name says why when it matters)
            return False

    def record(self, name: str) -> InstallRecord | None:
        """The install record of the unit's ``# servicehost: record = ...`` line."""
        path, meta = self._installed(name)
        return InstallRecord.from_json(meta["record"], str(path)) if meta.get("record") else None

    def render(self, options: InstallOptions, command: list[str]) -> Unit:
        """The unit for ``options``, after every check that needs this machine (``checks.py``)."""
        return checked_unit(options, command, self.scope)

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
        if self.scope.user or not user or not options.state_dir or under(options.state_dir, ("/var/lib",)):
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
        elif state and not under(state, ("/var/lib",)):
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
        if wait == 0:  # queue the restart and return: systemd runs the start once the stop is done
            self.systemctl("restart", "--no-block", unit)
            return
        limit = self._wait_for(meta, "TimeoutStopSec", wait) + self._wait_for(meta, "TimeoutStartSec", wait)
        try:
            proc = self.systemctl("restart", unit, timeout=limit, check=False)
        except SystemctlTimeout:
            raise StartupError(f"{name} is not ready again after {limit:g}s: see servicehost status") from None
        if proc.returncode != 0:
            raise StartupError(f"{name} did not restart: {self._why(unit)}")

    def status(self, name: str) -> ServiceStatus:
        """The same record as every manager, from ``systemctl show``; while it runs, the service's
        own state, summary and counters from its control channel. Between two runs of a crash
        loop (``activating/auto-restart``) it is ``restarting``, never ``starting``."""
        unit = unit_name(name)
        path = self.unit_path(name)
        if not path.is_file():
            return ServiceStatus(name, self.name, "not-installed", detail={"unit": str(path)})
        show = self.show(unit)
        active, sub = show.get("ActiveState"), show.get("SubState")
        status_text = show.get("StatusText")
        state = {"active": "running", "reloading": "running", "activating": "starting",
                 "deactivating": "stopping", "inactive": "stopped", "failed": "failed"}.get(active, "unknown")
        if active == "activating" and sub == "auto-restart":
            state = "restarting"  # it failed; systemd starts it again after RestartSec=
        service: dict[str, Any] = {"status_line": status_text or None}
        if state == "running":
            service = self._service_status(name) or service
            if "state" not in service and status_text.split(";")[0] in ("paused", "pausing"):
                service["state"] = "paused"
            state = service.pop("state", state)
            service.pop("sub_state", None)
        pid = show.int("MainPID") or None
        started = show.int("ExecMainStartTimestampMonotonic")
        uptime = max(0.0, time.monotonic() - started / 1e6) if pid and started else None
        detail = {"unit": str(path), "enabled": show.get("UnitFileState") or "unknown",
                  "substate": sub, "result": show.get("Result")}
        detail["logs"] = shlex.join([*self.scope.journalctl, "-u", unit])
        return ServiceStatus(name, self.name, state, pid=pid, uptime=uptime, restarts=show.int("NRestarts"),
                             last_exit=self._last_exit(unit, show), detail=detail, sub_state=f"{active}/{sub}",
                             account=self._account(show), start_mode=UNIT_FILE_START_MODES.get(show.get("UnitFileState")),
                             **service)

    def _service_status(self, name: str) -> dict[str, Any] | None:
        """What the running service says on its control channel (status_fields), None when it
        cannot be asked (a hand-written unit without one, or no permission to reach it)."""
        try:
            return status_fields(self._client(name, timeout=STATUS_TIMEOUT).call("status"))
        except ControlChannelError:
            return None

    def _account(self, show: Show) -> str | None:
        """Who it runs as: ``User=``, else a dynamic user, else root (a system unit) or you."""
        if show.get("User"):
            return show.get("User")
        if show.get("DynamicUser") == "yes":
            return "DynamicUser"
        return "root" if not self.scope.user else self.env.get("USER") or None

    def _last_exit(self, unit: str, show: Show) -> int | None:
        """The last exit of the main process: exit code, or minus the signal that killed it."""
        code, status = show.int("ExecMainCode"), show.int("ExecMainStatus")
        if code:
            return status if code == 1 else -status
        # Running again after a restart, or unloaded once stopped: the exit is only in the journal.
        proc = self._run([*self.scope.journalctl, "-u", unit, "-o", "cat", "-n", "500", "--no-pager"], check=False)
        found: int | None = None
        exited = False  # this run's exit was logged (a clean exit 0 is not: only "Deactivated successfully")
        for m in _exits(unit).finditer(proc.stdout):
            if m[4]:
                exited = False
            elif m[3]:
                found = found if exited else 0
            else:
                found, exited = (int(m[2]) if m[1] == "exited" else -int(m[2])), True
        return found

    def _client(self, name: str, timeout: float = 10.0) -> ControlClient:
        unit = unit_name(name)
        uids = {0, os.geteuid()}
        pid = self.show(unit).int("MainPID")
        if pid:
            with contextlib.suppress(OSError):
                uids.add(os.stat(f"/proc/{pid}").st_uid)
        path = socket_path(name, {"SERVICEHOST_RUNTIME_DIR": str(self.scope.runtime_base(self.env))})
        return ControlClient(path, timeout=timeout, server_uids=frozenset(uids))

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

    def follow_logs(self, name: str, lines: int) -> list[str]:
        """``journalctl -u NAME -n LINES -f``."""
        self._installed(name)
        return [*self.scope.journalctl, "-u", unit_name(name), "-n", str(lines), "-f", "--no-pager", "-o", "short-iso"]


def _written_by_servicehost(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.read(len(MARKER)) == MARKER
    except OSError:
        return False


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


__all__ = ["SHOW_PROPS", "SYSTEMCTL_TIMEOUT", "UNIT_FILE_START_MODES", "WAIT_SLACK", "Show", "SystemctlTimeout",
           "SystemdManager"]
