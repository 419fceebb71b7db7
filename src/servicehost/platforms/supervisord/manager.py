"""Managing installed services under supervisord (:class:`SupervisordManager`): the fallback where
no systemd runs as PID 1 (not on Windows). It writes one ``[program:NAME]`` file into a
supervisord's include directory (``config.py``) and controls it through supervisord's XML-RPC
interface on its unix socket (``rpc.py``); which supervisord: ``layout.py``.

servicehost's own supervisord is started on demand by ``install``/``start`` (which leave
:data:`STARTED_MARKER`, its pid, in its home), and ``remove`` of its last program stops it again
when servicehost started it (a supervisord run as a container's entrypoint or by its boot unit
stays). It does not come back after a reboot by itself: ``install`` writes
``servicehost-supervisord.service`` (a systemd unit running ``supervisord -n``) beside it and says
how to enable it, or to use ``supervisord -n -c CONF`` as a container's entrypoint.

supervisord cannot hold RUNNING back until a program is ready, so ``status`` says ``starting``
until the service itself says it is ready through its control channel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ... import logs
from ...errors import ConfigError, PlatformUnavailable, StartupError, StopIncomplete, UsageError
from ...stopping import Deadline
from ..base import InstallOptions, Secret, ServiceStatus, wait_until
from ..record import InstallRecord
from ..control import (
    STATUS_TIMEOUT,
    ControlChannelError,
    runtime_base,
    socket_path,
)
from ..control_client import ChannelOperations, ControlClient, status_fields
from . import ENTRY
from .config import PROGRAM_MARKER, boot_hint, read_program, render_boot_unit, render_program, render_supervisord_conf
from .credentials import read_secrets, store_secrets
from .files import lookup_account, read_int, remove_tree, write_private
from .backoff import RECORD_FILE, read_record
from .layout import ENV_HOME, STARTS_FILE, SYSTEMD_MARKER, Layout, discover
from .rpc import (
    ALREADY_ADDED,
    ALREADY_STARTED,
    BAD_NAME,
    CANT_REREAD,
    NOT_RUNNING,
    RPC_TIMEOUT,
    SPAWN_ERROR,
    STOPPED_STATES,
    SupervisordNotRunning,
    call,
    fault_type,
    faults_ok,
    last_exit_from_log,
)

log = logging.getLogger("servicehost.platforms.supervisord")

#: Default wait of ``start`` for the service to say it is ready (hang guard, not a speed claim).
START_WAIT = 90.0
#: Environment passed to a supervisord servicehost starts: its programs inherit it, so nothing else
#: from the admin's shell (tokens, keys) leaks into services.
SUPERVISORD_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
#: In the home of servicehost's own supervisord: the pid of the supervisord servicehost started
#: (``remove`` of the last program stops that one only).
STARTED_MARKER = "started-by-servicehost"

__all__ = ["STARTED_MARKER", "START_WAIT", "SUPERVISORD_ENV", "SupervisordManager"]


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
        return call(self.layout, method, *args, timeout=timeout or self.rpc_timeout)

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
        if self.layout.owned:
            write_private(self.layout.home / STARTED_MARKER, f"{self.rpc('getPID')}\n", 0o644)
        logs.supervisord_started(log, self.layout.origin, self.layout.conf)

    def stop_if_unused(self, wait: float = 30.0) -> bool:
        """Stop servicehost's own supervisord when it holds no program and servicehost started it
        (its pid is :data:`STARTED_MARKER`); True if it was stopped."""
        layout = self.layout
        marker = layout.home / STARTED_MARKER
        if not layout.owned or any(layout.programs_dir.glob("*.conf")):
            return False
        started = read_int(marker)
        try:
            pid = int(self.rpc("getPID", timeout=5.0))
        except SupervisordNotRunning:
            marker.unlink(missing_ok=True)
            return False
        if started != pid:
            return False  # run by someone else (an entrypoint, its boot unit): not ours to stop
        self.rpc("shutdown")
        wait_until(lambda: not _alive(pid), Deadline.after(wait), lambda: PlatformUnavailable(
            f"supervisord (pid {pid}) was asked to shut down but still runs after {wait:g}s"))
        marker.unlink(missing_ok=True)
        logs.supervisord_stopped(log, layout.conf)
        return True

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
            write_private(layout.conf, text)

    # -- program files ------------------------------------------------------------------------------
    def _installed(self, name: str) -> dict[str, str]:
        path = self.layout.program_file(name)
        if not path.is_file():
            raise UsageError(
                f"{name} is not installed under supervisord (no {path}; {self.layout.origin} supervisord): "
                "install it first, or give the right --name")
        return read_program(path)

    def installed(self) -> list[str]:
        """The programs servicehost wrote into this supervisord's include directory."""
        try:
            paths = sorted(self.layout.programs_dir.glob("*.conf"))
        except OSError:
            return []
        return [path.stem for path in paths if _written_by_servicehost(path)]

    def is_installed(self, name: str) -> bool:
        try:
            return _written_by_servicehost(self.layout.program_file(name))
        except UsageError:  # not a name a program can have
            return False

    def record(self, name: str) -> InstallRecord | None:
        """The install record of the program file's ``; servicehost: record = ...`` line."""
        meta = self._installed(name)
        where = str(self.layout.program_file(name))
        return InstallRecord.from_json(meta["record"], where) if meta.get("record") else None

    def _write_program(self, options: InstallOptions, command: list[str],
                       secrets: Sequence[tuple[Secret, bytes]] = ()) -> None:
        account = lookup_account(options.account)
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
            if options.state_dir and not options.working_directory:  # the program's directory=
                Path(options.state_dir).mkdir(mode=0o750, parents=True, exist_ok=True)
        self.layout.log_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        text = render_program(options, command, layout=self.layout, runtime_dir=base, account=account)
        store_secrets(self.layout, options.name, secrets, account)  # the paths text names exist before supervisord reads it
        path = self.layout.program_file(options.name)
        self.layout.programs_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_private(path, text)
        logs.supervisord_program_written(log, options.name, path)

    def _reread(self, undo: Path | None = None) -> tuple[list[str], list[str], list[str]]:
        """Let supervisord re-read its config; with ``undo``, a refused file is removed again."""
        try:
            added, changed, removed = self.rpc("reloadConfig")[0]
        except fault_type() as fault:
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
        write_private(self.layout.boot_unit, render_boot_unit(self.layout, sys.executable, longest + 30), 0o644)

    # -- Manager ------------------------------------------------------------------------------------
    def install(self, options: InstallOptions, command: list[str]) -> None:
        """Write ``[program:NAME]`` (autostart per start mode) and let supervisord read it; starts
        supervisord when it is not running. Does not start the service (``start`` does)."""
        path = self.layout.program_file(options.name)
        if path.exists():
            raise UsageError(f"{options.name} is already installed under supervisord ({path}): "
                             "use update, or remove it first")
        secrets = read_secrets(options)  # a bad @file changes nothing
        self.ensure_running()
        try:
            self._write_program(options, command, secrets)
            self._reread(undo=path)
        except BaseException:
            path.unlink(missing_ok=True)
            remove_tree(self.layout.credentials_dir(options.name))
            raise
        self._write_boot_unit()
        hint = boot_hint(self.layout, sys.executable)
        if hint:
            logs.supervisord_not_at_boot(log, hint)

    def update(self, options: InstallOptions, command: list[str]) -> None:
        """Rewrite the program file; supervisord applies it at the next ``restart`` (not now)."""
        self._installed(options.name)
        secrets = read_secrets(options)  # a bad @file changes nothing
        self.ensure_running()
        self._write_program(options, command, secrets)
        self._reread()
        self._write_boot_unit()

    def remove(self, name: str, *, purge: bool = False) -> None:
        meta = self._installed(name)
        path = self.layout.program_file(name)
        if self.is_running():
            self.stop(name)
            with faults_ok(BAD_NAME):
                self.rpc("removeProcessGroup", name)
            path.unlink()
            self._reread()
        else:
            path.unlink()
        remove_tree(self.layout.credentials_dir(name))  # its secrets go with it, purge or not
        self.stop_if_unused()
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
        runtime = Path(meta["runtime_dir"]) / name
        if not self.is_running():
            _forget_starts(runtime)  # before supervisord autostarts it: this start counts as the first
            self.ensure_running()
        info = self._info(name)
        if info is None or info["statename"] in STOPPED_STATES:
            _forget_starts(runtime)
        self._apply(name, running=info is not None and info["statename"] not in STOPPED_STATES)
        try:
            with faults_ok(ALREADY_STARTED):
                self.rpc("startProcess", name, False)  # spawns it and returns (wait=False)
        except fault_type() as fault:
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
            with faults_ok(BAD_NAME):
                self.rpc("removeProcessGroup", name)
            added.append(name)
        if name in added:
            with faults_ok(ALREADY_ADDED):
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
        with faults_ok(NOT_RUNNING):
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
        starts = read_int(Path(meta.get("runtime_dir") or "/nonexistent") / name / STARTS_FILE)
        restarts = None if starts is None else max(0, starts - 1)
        mode = _start_mode(path)
        try:
            info = self._info(name)
        except SupervisordNotRunning:
            detail["note"] = "supervisord is not running (servicehost start starts it)"
            return ServiceStatus(name, self.name, "stopped", restarts=restarts, detail=detail,
                                 account=meta.get("account") or None, start_mode=mode)
        if info is None:
            detail["note"] = "installed; supervisord has not loaded it yet (servicehost start loads it)"
            return ServiceStatus(name, self.name, "stopped", restarts=restarts, detail=detail,
                                 account=meta.get("account") or None, start_mode=mode)
        detail["log"] = info.get("stdout_logfile", "")
        state = info["statename"]
        pid = info["pid"] or None
        uptime = float(info["now"] - info["start"]) if pid and info["start"] else None
        # BACKOFF: it ended too soon and supervisord starts it again after a delay.
        shown = {"STARTING": "starting", "BACKOFF": "restarting", "STOPPING": "stopping", "STOPPED": "stopped",
                 "FATAL": "failed", "UNKNOWN": "unknown"}.get(state, "unknown")
        service: dict[str, Any] = {}  # what the service itself says (its control channel)
        if state == "EXITED":  # ended by itself: a clean stop, or a failure not worth a restart
            assert ENTRY.exit_status is not None  # supervisord is a manager: its ENTRY declares one
            shown = "stopped" if info["exitstatus"] in ENTRY.exit_status.success else "failed"
        if state == "BACKOFF" and info.get("spawnerr"):
            detail["note"] = info["spawnerr"]
        record = read_record(Path(meta.get("runtime_dir") or "/nonexistent") / name) if pid else None
        if state == "RUNNING" and record is not None and record.phase == "waiting" and record.pid == pid:
            shown = "restarting"  # the new process waits before starting (backoff.py): not running yet
            detail["note"] = f"crash {record.crashes} in a row: it waits {max(0.0, record.until - time.monotonic()):.0f}s more"
        elif state == "RUNNING":
            shown, detail["ready"], service = self._service_state(name, meta)
        last = self._last_exit(name)
        if last is None and state in ("EXITED", "STOPPED"):
            last = info["exitstatus"]
        if last is not None and last < 0:
            detail["last exit"] = f"killed by {signal.Signals(-last).name}"
        return ServiceStatus(name, self.name, shown, pid=pid, uptime=uptime, restarts=restarts,
                             last_exit=last, detail=detail, sub_state=state,
                             account=meta.get("account") or _process_owner(pid), start_mode=mode,
                             **service)

    def _service_state(self, name: str, meta: Mapping[str, str]) -> tuple[str, str, dict[str, Any]]:
        """(state, the ``ready`` detail, the service's own status fields) from its control channel:
        supervisord's RUNNING is ``starting`` until the service says it is ready."""
        try:
            answer = self._client(name, meta, timeout=STATUS_TIMEOUT).call("status")
        except ControlChannelError as exc:
            return "starting", f"no ({exc})", {"ready": False}
        fields = status_fields(answer)
        shown, host_state = fields.pop("state"), fields.pop("sub_state")
        return shown, f"{'yes' if fields['ready'] else 'no'} ({host_state})", fields

    def _last_exit(self, name: str) -> int | None:
        try:
            text = self.rpc("readLog", -65536, 0)
        except (fault_type(), PlatformUnavailable):
            return None  # no main log file (syslog): fall back to supervisord's exit status
        return last_exit_from_log(text, name)

    def _info(self, name: str) -> dict[str, Any] | None:
        try:
            return self.rpc("getProcessInfo", name)  # type: ignore[no-any-return]
        except fault_type() as fault:
            if fault.faultCode == BAD_NAME:
                return None
            raise

    def _client(self, name: str, meta: Mapping[str, str] | None = None, timeout: float = 10.0) -> ControlClient:
        meta = meta if meta is not None else self._installed(name)
        uids = {0, os.geteuid()}
        account = lookup_account(meta.get("account", ""))
        if account is not None:
            uids.add(account.pw_uid)
        path = socket_path(name, {"SERVICEHOST_RUNTIME_DIR": meta["runtime_dir"]})
        return ControlClient(path, timeout=timeout, server_uids=frozenset(uids))

    def logs(self, name: str, size: int = 16384) -> str:
        """The last ``size`` bytes of the program's (rotated) log, through supervisord."""
        self._installed(name)
        text, _, _ = self.rpc("tailProcessStdoutLog", name, 0, size)
        return text  # type: ignore[no-any-return]

    def follow_logs(self, name: str, lines: int) -> list[str]:
        """``tail -F`` of the program's log file (the file supervisord writes and rotates)."""
        self._installed(name)
        return ["tail", "-n", str(lines), "-F", str(self.layout.log_dir / f"{name}.log")]


def _start_mode(program: Path) -> str | None:
    """auto | manual, from the program file's ``autostart``."""
    found = re.search(r"^autostart = (true|false)$", program.read_text(encoding="utf-8"), re.M)
    return None if found is None else "auto" if found[1] == "true" else "manual"


def _process_owner(pid: int | None) -> str | None:
    """The account process ``pid`` runs as (None: no process, or not known)."""
    if not pid:
        return None
    import pwd

    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _forget_starts(runtime: Path) -> None:
    """An admin's start: counted as the first, and never waiting as a restart after a crash."""
    (runtime / STARTS_FILE).unlink(missing_ok=True)
    (runtime / RECORD_FILE).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _written_by_servicehost(path: Path) -> bool:
    """A program file servicehost wrote (``config.render_program``'s first line), not an admin's own."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.read(len(PROGRAM_MARKER)) == PROGRAM_MARKER
    except OSError:
        return False
