"""Windows: run under the Service Control Manager through pywin32, register services, manage them.

Only ``platforms/windows/`` imports ``win32*`` (pywin32), and lazily.

This file is light on purpose: the registry (``platforms/__init__.py``) reads ``ENTRY`` on every
start to decide whether this platform is worth importing. Everything else is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..entry import EXIT_STATUS, PlatformEntry, Refused

ENTRY = PlatformEntry(
    name='windows',
    platform="servicehost.platforms.windows._unsplit:WindowsPlatform",
    run_markers=(),
    os_names=('win32',),
    exit_status=EXIT_STATUS,
    options={
        'start_mode': 'StartType (auto/manual/disabled) + DELAYED_AUTO_START_INFO for delayed',
        'start_mode=delayed': 'DELAYED_AUTO_START_INFO',
        'start_mode=disabled': 'SERVICE_DISABLED',
        'dependencies': 'lpDependencies (StopServiceWithDeps stops dependents first)',
        'account': 'virtual account NT SERVICE\\<name> by default, or --username (password from a prompt/stdin)',
        'environment': 'Services\\<name>\\Environment',
        'environment=@file': "NAME_FILE=%ProgramData%\\servicehost\\credentials\\<name>\\NAME: a copy whose DACL (protected, no inheritance) allows SYSTEM, Administrators and the service's own SID",
        'working_directory': 'set by the host at start',
        'stop_timeout': 'STOP_PENDING wait hints + PRESHUTDOWN_INFO',
        'restart': 'failure actions + FAILURE_ACTIONS_FLAG',
        'restart_delay': 'failure action delays (restart_delay, then doubled)',
        'restart_delay!=default': 'failure action delays',
        'watchdog': 'the host exits with HUNG (5) and failure actions restart it',
    },
)


def __getattr__(attr: str) -> Any:
    # The platform's code, imported on first use (``from servicehost.platforms.windows import X``).
    if attr.startswith("__"):
        raise AttributeError(attr)
    return getattr(importlib.import_module(f"{__name__}._unsplit"), attr)
