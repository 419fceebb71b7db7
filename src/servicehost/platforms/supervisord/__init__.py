"""supervisord: run as a ``[program:x]``, render its config, manage a servicehost-owned (or Debian's) supervisord.

This file is light on purpose: the registry (``platforms/__init__.py``) reads ``ENTRY`` on every
start to decide whether this platform is worth importing. Everything else is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..entry import EXIT_STATUS, PlatformEntry, Refused

ENTRY = PlatformEntry(
    name='supervisord',
    platform="servicehost.platforms.supervisord._unsplit:SupervisordPlatform",
    run_markers=('SUPERVISOR_ENABLED',),
    os_names=(),
    exit_status=EXIT_STATUS,
    options={
        'start_mode': 'autostart=true (auto) / false (manual); delayed, disabled: refused',
        'start_mode=delayed': Refused('supervisord has no delayed start; use manual and start it later'),
        'start_mode=disabled': Refused('supervisord cannot disable a program; remove it instead'),
        'dependencies': Refused('supervisord has no dependencies; use priority= ordering by hand'),
        'account': 'user= (supervisord must run as root to switch)',
        'environment': 'environment=',
        'environment=@file': 'NAME_FILE=<supervisord home>/credentials/<name>/NAME: a copy, mode 0400 in a 0700 folder, owned by user= (else the installing user)',
        'working_directory': 'directory=',
        'stop_timeout': 'stopwaitsecs= (stop_timeout + margin)',
        'restart': 'autorestart=unexpected',
        'restart_delay': 'supervisord restarts at once; a non-default restart_delay is refused',
        'restart_delay!=default': Refused('supervisord has no restart delay (it restarts at once, backing off only on failed starts)'),
        'watchdog': 'the host exits with HUNG (5); autorestart restarts it',
    },
)


def __getattr__(attr: str) -> Any:
    # The platform's code, imported on first use (``from servicehost.platforms.supervisord import X``).
    if attr.startswith("__"):
        raise AttributeError(attr)
    return getattr(importlib.import_module(f"{__name__}._unsplit"), attr)
