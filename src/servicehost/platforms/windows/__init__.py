"""Windows: run under the Service Control Manager through pywin32, register services, manage them.

    platform.py        WindowsPlatform: detect, installable, run (under the SCM session, or the foreground)
    boot.py            how a service process starts: the ImagePath (BOOT, service_command), service_main
    session.py         running under the SCM: ScmSession (dispatcher, ServiceFramework adapter, controls →
                       host calls), StatusReporter (START/STOP_PENDING pumped with rising checkpoints)
    stdio.py           a service's stdout/stderr: kept, then logged (no console, never blocks)
    eventlog.py        the Event Log: EventLogHandler, registering and removing the service's source
    message_file.py    the hand-built message-file DLL that renders every event id
    service_config.py  what the SCM reads: the install plan, description, delayed start, recovery,
                       preshutdown, service SIDs, the service key (Environment, Parameters)
    security.py        accounts and access: virtual account SIDs, DACL evaluation, the reachability check,
                       logon right, state-folder grants
    credentials.py     copies of --env NAME=@file secrets under a protected DACL
    paths.py           where a service's files (%ProgramData%\\servicehost) and registry key are
    manager.py         managing installed services: WindowsManager (install/update/remove/start/stop/status/logs)
    errors.py          the Win32 error codes acted on; ServiceControlError
    pywin32.py         the lazy pywin32 import (and servicehost.compat's door to it): tiny

Only ``platforms/windows/`` imports ``win32*`` (pywin32), lazily, through ``pywin32.py``. No module
here imports the CLI: the ImagePath's boot program hands ``service_main`` its runner.

This file is light on purpose: the registry (``platforms/__init__.py``) reads ``ENTRY`` on every
start to decide whether this platform is worth importing. The names below are imported from their
module on first use (``from servicehost.platforms.windows import service_command``).
"""

from __future__ import annotations

from ..._lazy import lazy_names
from ..entry import EXIT_STATUS, PlatformEntry

ENTRY = PlatformEntry(
    name='windows',
    platform="servicehost.platforms.windows.platform:WindowsPlatform",
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
        'restart_delay': 'failure action delays: restart_delay, doubling per failure in a row up to 60 s',
        'restart_delay!=default': 'failure action delays',
        'watchdog': 'the host exits with HUNG (5) and failure actions restart it',
    },
)

#: Where each name of the package lives: name → module (relative to this package).
NAMES: dict[str, str] = {
    # the platform entry
    "WindowsPlatform": "platform",
    # how a service process starts: the ImagePath and service_main
    "BOOT": "boot",
    "POSIX_ONLY": "boot",
    "Runner": "boot",
    "apply_parameters": "boot",
    "base_python": "boot",
    "command_line": "boot",
    "include_system_site_packages": "boot",
    "prepare": "boot",
    "service_command": "boot",
    "service_main": "boot",
    # running under the SCM: the session, the status pump, controls → host calls
    "CONNECT_TIMEOUT": "session",
    "PUMP_INTERVAL": "session",
    "WAIT_HINT_MS": "session",
    "ScmSession": "session",
    "StatusReporter": "session",
    "current_session": "session",
    "framework_class": "session",
    "open_session": "session",
    "prepare_process": "session",
    "scm_exit_status": "session",
    # the control channel: the named pipe, its security descriptor, who may ask what
    "PipeClient": "control_pipe",
    "PipeConnection": "control_pipe",
    "PipePermissions": "control_pipe",
    "PipeServer": "control_pipe",
    "own_sids": "control_pipe",
    "pipe_name": "control_pipe",
    "pipe_sddl": "control_pipe",
    "serve_pipe": "control_pipe",
    # a service's stdout/stderr
    "ServiceStdio": "stdio",
    "restore_console": "stdio",
    # the Event Log: the handler, the source
    "EventLogHandler": "eventlog",
    "attach_event_log": "eventlog",
    "message_files": "eventlog",
    "register_event_source": "eventlog",
    "remove_event_source": "eventlog",
    # the hand-built message-file DLL
    "MESSAGE_TEXT": "message_file",
    "event_ids": "message_file",
    "message_table": "message_file",
    "resource_dll": "message_file",
    # what the SCM reads for a service: the plan, ChangeServiceConfig2, the service key
    "PRESHUTDOWN_MARGIN": "service_config",
    "RECORD_VALUE": "service_config",
    "START_TYPES": "service_config",
    "InstallPlan": "service_config",
    "change_config2": "service_config",
    "code_paths": "service_config",
    "configure_service": "service_config",
    "failure_actions": "service_config",
    "plan_install": "service_config",
    "read_parameter": "service_config",
    "write_parameters": "service_config",
    # accounts, SIDs, DACLs
    "ADMINISTRATORS_SID": "security",
    "BUILTIN_ACCOUNTS": "security",
    "FILE_ALL_ACCESS": "security",
    "FILE_APPEND_DATA": "security",
    "FILE_EXECUTE": "security",
    "FILE_GENERIC_READ": "security",
    "FILE_MODIFY": "security",
    "FILE_READ_DATA": "security",
    "FILE_WRITE_DATA": "security",
    "NEED_READ": "security",
    "NEED_WRITE": "security",
    "SERVICE_GROUP_SIDS": "security",
    "SE_SERVICE_LOGON_RIGHT": "security",
    "SYSTEM_SID": "security",
    "Ace": "security",
    "account_sids": "security",
    "check_reachable": "security",
    "grant_logon_right": "security",
    "grant_modify": "security",
    "granted_access": "security",
    "needs_password": "security",
    "protect": "security",
    "read_dacl": "security",
    "secret_aces": "security",
    "virtual_account": "security",
    "virtual_account_sid": "security",
    # secret copies
    "remove_secrets": "credentials",
    "store_secrets": "credentials",
    # where a service's files and registry key are
    "SERVICES_KEY": "paths",
    "credentials_dir": "paths",
    "message_file_path": "paths",
    "program_data": "paths",
    "remove_tree": "paths",
    "service_data_dir": "paths",
    "service_key": "paths",
    "start_cache_file": "paths",
    # managing installed services
    "SCM_STATES": "manager",
    "STATE_NAMES": "manager",
    "ScmHandle": "manager",
    "WindowsManager": "manager",
    "dependents": "manager",
    "exit_text": "manager",
    "last_exit": "manager",
    "prompt_password": "manager",
    "uptime": "manager",
    # Win32 error codes, ServiceControlError
    "ERROR_ACCESS_DENIED": "errors",
    "ERROR_CALL_NOT_IMPLEMENTED": "errors",
    "ERROR_FAILED_SERVICE_CONTROLLER_CONNECT": "errors",
    "ERROR_INVALID_LEVEL": "errors",
    "ERROR_INVALID_SERVICE_CONTROL": "errors",
    "ERROR_SERVICE_ALREADY_RUNNING": "errors",
    "ERROR_SERVICE_CANNOT_ACCEPT_CTRL": "errors",
    "ERROR_SERVICE_DISABLED": "errors",
    "ERROR_SERVICE_DOES_NOT_EXIST": "errors",
    "ERROR_SERVICE_EXISTS": "errors",
    "ERROR_SERVICE_NEVER_STARTED": "errors",
    "ERROR_SERVICE_NOT_ACTIVE": "errors",
    "ERROR_SERVICE_SPECIFIC_ERROR": "errors",
    "HINTS": "errors",
    "ServiceControlError": "errors",
    "scm_error": "errors",
    "strerror": "errors",
    "winerror": "errors",
    # the lazy pywin32 import
    "COMPAT_MODULES": "pywin32",
    "import_pywin32": "pywin32",
    "pywin32_module": "pywin32",
    "win32_error": "pywin32",
}

__all__ = ["ENTRY", *NAMES]

__getattr__, __dir__ = lazy_names(__name__, {name: f".{module}" for name, module in NAMES.items()})
