"""Running under supervisord (:class:`SupervisordPlatform`): detected by ``SUPERVISOR_ENABLED``
and ``SUPERVISOR_PROCESS_NAME``, which supervisord sets for its programs. ``run`` is the
foreground signal handling (stopsignal TERM; SIGHUP reloads) plus the control channel
(``control.py``) and its ready marker, plus a start counter in the runtime directory
(supervisord counts no restarts), and the wait before a restart after a crash (``backoff.py``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ... import logs
from ...errors import ExitCode
from ...host import Host
from ..control import ControlServer, socket_path
from ..foreground import signals_to_host
from . import backoff
from .files import read_int, write_private
from .layout import STARTS_FILE, SYSTEMD_MARKER

if TYPE_CHECKING:
    from .manager import SupervisordManager

log = logging.getLogger("servicehost.platforms.supervisord")

__all__ = ["SupervisordPlatform", "record_start"]


def record_start(directory: Path) -> int:
    """Count one more start of the service in its runtime directory; the new count."""
    path = directory / STARTS_FILE
    count = (read_int(path) or 0) + 1
    try:
        write_private(path, f"{count}\n", 0o644)
    except OSError as exc:  # status then shows restarts as unknown; the service runs on
        logs.supervisord_start_not_counted(log, path, exc)
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

    def holds_services(self, env: Mapping[str, str]) -> bool:
        return sys.platform != "win32"  # beside systemd too: install --manager supervisord puts them there

    def installable(self, env: Mapping[str, str]) -> str | None:
        if sys.platform == "win32":
            return None  # supervisord does not run on Windows at all
        if self.systemd_marker.exists():
            return None  # systemd runs as PID 1: install there
        return f"no systemd runs as PID 1 (no {self.systemd_marker}): supervisord is the fallback"

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Wait before a restart after a crash (``backoff.py``; a stop signal ends the wait and the
        process exits 0), then serve the control channel, count this start, route signals and run
        the host until it stops. Raises StartupError (exit 3) when the control channel cannot be
        set up safely."""
        name = os.environ.get("SUPERVISOR_PROCESS_NAME") or host.name
        path = socket_path(name)
        base = backoff.restart_delay(os.environ)
        crashes, delay = backoff.plan(path.parent, base) if base is not None else (0, 0.0)
        if delay > 0:
            backoff.waiting(path.parent, crashes, delay)
            logs.supervisord_restart_waiting(log, crashes, delay)
            stopped_by = backoff.wait_out(delay)
            if stopped_by is not None:
                logs.supervisord_restart_abandoned(log, stopped_by)
                backoff.finish(path.parent, ExitCode.OK)
                return ExitCode.OK
        server = ControlServer(host, path)
        server.start()
        code = ExitCode.CRASH
        try:
            backoff.running(server.path.parent, crashes)
            record_start(server.path.parent)
            with signals_to_host(host):
                code = host.run()
            return code
        finally:
            backoff.finish(server.path.parent, code)
            server.close()

    def manager(self) -> SupervisordManager:
        from .manager import SupervisordManager

        return SupervisordManager()
