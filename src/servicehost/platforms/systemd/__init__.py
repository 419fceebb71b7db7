"""systemd: run as a ``Type=notify`` unit (sd_notify, journald), render units, manage installed ones.

This file is light on purpose: the registry (``platforms/__init__.py``) reads ``ENTRY`` on every
start to decide whether this platform is worth importing. Everything else is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..entry import EXIT_STATUS, PlatformEntry, Refused

ENTRY = PlatformEntry(
    name='systemd',
    platform="servicehost.platforms.systemd._unsplit:SystemdPlatform",
    run_markers=('NOTIFY_SOCKET', 'INVOCATION_ID'),
    os_names=(),
    exit_status=EXIT_STATUS,
    options={
        'start_mode': 'enable (auto) / no enable (manual) / mask (disabled); delayed: refused',
        'start_mode=delayed': Refused('systemd has no delayed start; order the unit After= another instead'),
        'start_mode=disabled': 'systemctl mask',
        'dependencies': 'Requires= + After=',
        'account': 'DynamicUser=yes by default, or User=',
        'environment': 'Environment=',
        'environment=@file': 'LoadCredential=NAME:/path + Environment=NAME_FILE=%d/NAME',
        'working_directory': 'WorkingDirectory=',
        'stop_timeout': 'TimeoutStopSec= (stop_timeout + margin)',
        'restart': 'Restart=on-failure',
        'restart_delay': 'RestartSec=',
        'restart_delay!=default': 'RestartSec=',
        'watchdog': 'WatchdogSec= fed only while workers heartbeat',
    },
)


def __getattr__(attr: str) -> Any:
    # The platform's code, imported on first use (``from servicehost.platforms.systemd import X``).
    if attr.startswith("__"):
        raise AttributeError(attr)
    return getattr(importlib.import_module(f"{__name__}._unsplit"), attr)
