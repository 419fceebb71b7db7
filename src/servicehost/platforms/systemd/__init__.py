"""systemd: run as a ``Type=notify`` unit (sd_notify, journald), render units, manage installed ones.

    platform.py   SystemdPlatform: detect, installable, run (signals + notifications + control channel)
    notify.py     running under systemd: Notifier (sd_notify datagrams), watchdog, NotifySession
    journal.py    journald priority prefixes on stderr (JournalFormatter)
    unit.py       rendering the unit file: Unit, UnitSettings, render_unit, escaping, secrets, read_meta
    checks.py     install-time checks on this machine: probe_interpreter, code_paths, unreachable
    manager.py    managing installed units: SystemdManager (systemctl, journalctl), Show

This file is light on purpose: the registry (``platforms/__init__.py``) reads ``ENTRY`` on every
start to decide whether this platform is worth importing. The names below are imported from their
module on first use (``from servicehost.platforms.systemd import render_unit``).
"""

from __future__ import annotations

from ..._lazy import lazy_names
from ..entry import EXIT_STATUS, PlatformEntry, Refused

ENTRY = PlatformEntry(
    name='systemd',
    platform="servicehost.platforms.systemd.platform:SystemdPlatform",
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
        'restart_delay': 'RestartSec= (+ RestartSteps=/RestartMaxDelaySec= from systemd 254: growing to 60 s)',
        'restart_delay!=default': 'RestartSec=',
        'watchdog': 'WatchdogSec= fed only while workers heartbeat',
    },
)

#: Where each name of the package lives: name → module (relative to this package).
NAMES: dict[str, str] = {
    # the platform entry
    "BOOTED_MARKER": "platform",
    "SystemdPlatform": "platform",
    # running under systemd: sd_notify
    "EXTEND_WINDOW": "notify",
    "SEND_TIMEOUT": "notify",
    "TICK": "notify",
    "Notifier": "notify",
    "NotifySession": "notify",
    "monotonic_usec": "notify",
    "watchdog_interval": "notify",
    # journald
    "PRIORITIES": "journal",
    "JournalFormatter": "journal",
    "priority": "journal",
    "stderr_is_journal": "journal",
    "use_journal_prefixes": "journal",
    # the unit file
    "HARDENING": "unit",
    "HOME_ROOTS": "unit",
    "LIMIT_NOFILE": "unit",
    "MARKER": "unit",
    "START_LIMIT_BURST": "unit",
    "START_MARGIN": "unit",
    "STOP_MARGIN": "unit",
    "SYSTEM": "unit",
    "SYSTEM_UNIT_DIR": "unit",
    "TMP_ROOTS": "unit",
    "Scope": "unit",
    "Unit": "unit",
    "UnitSettings": "unit",
    "effective_setting": "unit",
    "env_assignment": "unit",
    "exec_line": "unit",
    "exec_word": "unit",
    "looks_secret": "unit",
    "one_line": "unit",
    "read_meta": "unit",
    "render_unit": "unit",
    "split_account": "unit",
    "split_environment": "unit",
    "start_limit_interval": "unit",
    "under": "unit",
    "unit_name": "unit",
    "user_scope": "unit",
    # install-time checks
    "PROBE_TIMEOUT": "checks",
    "Interpreter": "checks",
    "checked_unit": "checks",
    "code_paths": "checks",
    "parse_version": "checks",
    "probe_interpreter": "checks",
    "systemd_version": "checks",
    "unreachable": "checks",
    # managing installed units
    "SHOW_PROPS": "manager",
    "SYSTEMCTL_TIMEOUT": "manager",
    "UNIT_FILE_START_MODES": "manager",
    "WAIT_SLACK": "manager",
    "Show": "manager",
    "SystemctlTimeout": "manager",
    "SystemdManager": "manager",
}

__all__ = ["ENTRY", *NAMES]

__getattr__, __dir__ = lazy_names(__name__, {name: f".{module}" for name, module in NAMES.items()})
