"""The platform entry: :class:`SystemdPlatform` detects a service running under systemd, says when
systemd can take an install, and runs the host.

Running is detected by ``NOTIFY_SOCKET`` (systemd sets it for ``Type=notify`` units), or by
``INVOCATION_ID`` when stderr really is the journal (``JOURNAL_STREAM`` names stderr's device and
inode; a bare ``INVOCATION_ID`` is inherited by every child of a unit, e.g. a CI runner's tests, so
it alone proves nothing). ``run`` is the foreground signal handling (``signals_to_host``: SIGTERM
stops, SIGHUP reloads), journald's priority prefixes (``journal.py``), a :class:`NotifySession`
(``notify.py``), and the control channel (``control.py``) in the unit's RuntimeDirectory for
pause / continue / control / reload, which systemd has no verbs for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ... import logs
from ...errors import ExitCode, ServiceHostError
from ...host import Host
from ..control import COMMANDS as CONTROL_COMMANDS
from ..control import ControlServer, Request, socket_path
from ..foreground import signals_to_host
from .journal import JournalFormatter, stderr_is_journal, use_journal_prefixes
from .notify import Notifier, NotifySession, watchdog_interval

if TYPE_CHECKING:
    from .manager import SystemdManager

log = logging.getLogger("servicehost.platforms.systemd")

BOOTED_MARKER = Path("/run/systemd/system")  # sd_booted(): exists only when systemd is PID 1


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

    def holds_services(self, env: Mapping[str, str]) -> bool:
        return self.installable(env) is not None  # the units this user's systemd (system or user) has

    def installable(self, env: Mapping[str, str]) -> str | None:
        if not sys.platform.startswith("linux") or not self.booted_marker.exists():
            return None
        if os.geteuid() == 0:
            return f"systemd runs as PID 1 ({self.booted_marker} exists): a system unit"
        runtime = env.get("XDG_RUNTIME_DIR")
        if runtime and (Path(runtime) / "systemd").is_dir():
            return "systemd runs as PID 1 and you have a user manager: a user unit (systemctl --user)"
        return None

    def console_formatter(self, env: Mapping[str, str]) -> logging.Formatter | None:
        """journald's priority prefixes when stderr is the journal (the CLI formats the console
        with it before the first line); None otherwise."""
        return JournalFormatter() if stderr_is_journal(env) else None

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
        from .manager import SystemdManager  # installing needs it; running a service does not

        return SystemdManager()


@contextlib.contextmanager
def _control_channel(host: Host, env: Mapping[str, str], session: NotifySession | None) -> Iterator[None]:
    """Serve the control channel in the unit's RuntimeDirectory (``$RUNTIME_DIRECTORY``); without
    one it is optional: a service in a hand-written unit still runs, without pause/continue."""
    runtime = (env.get("RUNTIME_DIRECTORY") or "").split(":")[0]
    path = Path(runtime) / "control.sock" if runtime else socket_path(host.name)

    def reload(req: Request) -> Any:
        _reload(req.host, session)
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


class _SignalTarget:
    """What ``signals_to_host`` calls: the host's request_stop, and reload with notifications."""

    def __init__(self, host: Host, session: NotifySession | None) -> None:
        self._host = host
        self._session = session

    def request_stop(self, reason: str = "requested") -> None:
        self._host.request_stop(reason)

    def reload(self) -> None:
        _reload(self._host, self._session)


def _reload(host: Host, session: NotifySession | None) -> None:
    """The services' reload(), between RELOADING=1 and READY=1 when systemd is listening."""
    if session is None:
        host.reload()
    else:
        session.reload()


__all__ = ["BOOTED_MARKER", "SystemdPlatform"]
