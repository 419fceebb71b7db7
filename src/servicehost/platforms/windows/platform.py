"""The platform entry: :class:`WindowsPlatform` detects a process the SCM started, says when the
SCM can take an install, and runs the host — under the SCM session (``session.py``) when
``boot.service_main`` connected one, else (the ImagePath typed into a console, ``debug``) in the
foreground.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ... import logs
from ...errors import ExitCode, PlatformUnavailable
from ...host import Host
from .pywin32 import import_pywin32
from .session import ScmSession, current_session, prepare_process
from .stdio import restore_console

if TYPE_CHECKING:
    from .manager import WindowsManager

log = logging.getLogger("servicehost.platforms.windows")


class WindowsPlatform:
    """The Windows Service Control Manager, through pywin32."""

    name = "windows"

    def detect(self, env: Mapping[str, str]) -> str | None:
        session = current_session()
        if session is not None and session.status is not None:
            return f"started by the Windows Service Control Manager as {session.name}"
        return None

    def holds_services(self, env: Mapping[str, str]) -> bool:
        return sys.platform == "win32"

    def installable(self, env: Mapping[str, str]) -> str | None:
        if sys.platform == "win32":
            return "Windows: the Service Control Manager"
        return None

    def run(self, host: Host, *, debug: bool = False) -> ExitCode:
        """Run ``host`` as the SCM's service (main thread); in a console, run it in the foreground."""
        from ..._startcache import current

        start_cache = current()  # the ImagePath's boot program began with it (boot.py)
        if start_cache is not None:  # once ready: the modules this start imported, for the next
            host.after_ready(start_cache.save_soon)
        session = current_session()
        if not debug and sys.platform == "win32" and session is None:
            session = ScmSession(host.name)  # ``servicehost run ... --manager windows`` by hand
            session.start()
        if debug or session is None or not session.wait_connected():
            from ..foreground import ForegroundPlatform  # only here: a service never needs it

            restore_console()
            if not debug:
                logs.scm_not_a_service(log, session.error if session else "not Windows")
            return ForegroundPlatform().run(host, debug=debug)
        prepare_process(session.name)
        return session.serve(host)

    def manager(self) -> WindowsManager:
        if sys.platform != "win32":
            raise PlatformUnavailable("the Windows Service Control Manager exists only on Windows")
        import_pywin32("win32service")
        from .manager import WindowsManager

        return WindowsManager()


__all__ = ["WindowsPlatform"]
