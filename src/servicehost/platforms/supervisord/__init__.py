"""supervisord: the embedded default manager where no init system runs (containers, CI, WSL).

    platform.py     SupervisordPlatform: detect, installable, run (signals, control channel, start count)
    layout.py       which supervisord (discover: given config, own home, Debian's, own default), Layout
    config.py       what supervisord reads: its own config, [program:NAME] files, the boot unit
    credentials.py  --env NAME=@file: copies of the secrets only the service's account reads
    files.py        files written privately and atomically; the accounts that own them
    rpc.py          talking to supervisord: XML-RPC over its unix socket, faults, process states
    backoff.py      the wait before a restart after a crash (supervisord has none): the restart record
    manager.py      SupervisordManager: install/update/remove/start/stop/status, servicehost's own supervisord

This file is light on purpose: the registry (``platforms/__init__.py``) reads ``ENTRY`` on every
start to decide whether this platform is worth importing. The names below are imported from their
module on first use (``from servicehost.platforms.supervisord import SupervisordManager``).
"""

from __future__ import annotations

from ..._lazy import lazy_names
from ..entry import EXIT_STATUS, PlatformEntry, Refused

ENTRY = PlatformEntry(
    name='supervisord',
    platform="servicehost.platforms.supervisord.platform:SupervisordPlatform",
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
        'working_directory': 'directory= (default: the state dir)',
        'stop_timeout': 'stopwaitsecs= (stop_timeout + margin)',
        'restart': 'autorestart=unexpected, exitcodes=0,2,3,4, startsecs=0',
        'restart_delay': 'waited by servicehost before the restarted service starts, doubling per crash in a row up to 60 s',
        'restart_delay!=default': 'SERVICEHOST_RESTART_DELAY= (servicehost waits it)',
        'watchdog': 'the host exits with HUNG (5); autorestart restarts it',
    },
)


#: Where each name of the package lives: name → module (relative to this package).
NAMES: dict[str, str] = {
    # running under supervisord
    "SupervisordPlatform": "platform",
    "record_start": "platform",
    # the wait before a restart
    "ENV_RESTART_DELAY": "backoff",
    "RECORD_FILE": "backoff",
    "Record": "backoff",
    "plan": "backoff",
    "read_record": "backoff",
    "restart_delay": "backoff",
    "wait_out": "backoff",
    # which supervisord, where the files are
    "BOOT_UNIT": "layout",
    "CREDENTIALS": "layout",
    "DEBIAN_CONF": "layout",
    "ENV_CONF": "layout",
    "ENV_HOME": "layout",
    "Layout": "layout",
    "STARTS_FILE": "layout",
    "SYSTEMD_MARKER": "layout",
    "default_home": "layout",
    "discover": "layout",
    "layout_from_conf": "layout",
    "owned_layout": "layout",
    # what supervisord reads
    "LOG_BACKUPS": "config",
    "LOG_MAX_BYTES": "config",
    "PROGRAM_MARKER": "config",
    "START_RETRIES": "config",
    "START_SECS": "config",
    "STOP_MARGIN": "config",
    "boot_hint": "config",
    "exit_codes": "config",
    "read_program": "config",
    "render_boot_unit": "config",
    "render_program": "config",
    "render_supervisord_conf": "config",
    "stop_wait_secs": "config",
    # --env NAME=@file copies
    "read_secrets": "credentials",
    "store_secrets": "credentials",
    # private files and accounts
    "lookup_account": "files",
    "read_int": "files",
    "remove_tree": "files",
    "write_private": "files",
    # talking to supervisord (XML-RPC)
    "ALREADY_ADDED": "rpc",
    "ALREADY_STARTED": "rpc",
    "BAD_NAME": "rpc",
    "CANT_REREAD": "rpc",
    "FAILED": "rpc",
    "NOT_RUNNING": "rpc",
    "NO_FILE": "rpc",
    "RPC_TIMEOUT": "rpc",
    "SPAWN_ERROR": "rpc",
    "STILL_RUNNING": "rpc",
    "STOPPED_STATES": "rpc",
    "SupervisordNotRunning": "rpc",
    "call": "rpc",
    "fault_type": "rpc",
    "faults_ok": "rpc",
    "last_exit_from_log": "rpc",
    # managing installed programs
    "START_WAIT": "manager",
    "STARTED_MARKER": "manager",
    "SUPERVISORD_ENV": "manager",
    "SupervisordManager": "manager",
}

__all__ = ["ENTRY", *NAMES]

__getattr__, __dir__ = lazy_names(__name__, {name: f".{module}" for name, module in NAMES.items()})
