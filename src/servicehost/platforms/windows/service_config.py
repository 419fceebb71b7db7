r"""What the SCM reads for a service, beyond its ImagePath: computed once (:func:`plan_install`), then
written (:func:`configure_service`) by install and update.

* the plan: the ImagePath (``boot.service_command``), the account (the virtual account
  ``NT SERVICE\<name>`` by default) and the SIDs its token holds, the start type, the state and
  working folders, the environment (secrets as ``NAME_FILE`` copies), checked against what the
  account can reach before anything is registered;
* the ``ChangeServiceConfig2`` levels: description, delayed auto-start, recovery (:func:`failure_actions`:
  a restart after the restart delay, doubling per failure in a row up to 60 s, the count reset
  after the longest wait plus a healthy minute: ``platforms/restarts.py``; FAILURE_ACTIONS_FLAG so
  failure *exits* count too),
  preshutdown (the stop timeout + PRESHUTDOWN_MARGIN), service SIDs;
* the service key: ``Environment``, and ``Parameters\WorkingDirectory`` / ``StateDirectory`` /
  ``InstallRecord`` (the install record, ``record.py``: what every later command reads back by name);
* the secret copies (``credentials.py``), the Event Log source (``eventlog.py``), the logon right
  and write access to the state folders (``security.py``).

A level this SCM does not implement (Wine: error 124) is a warning (5310), or a refusal where the
option cannot be honoured otherwise (delayed start).
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import logs
from ...errors import PlatformUnavailable
from .. import restarts
from ..base import InstallOptions, Secret, split_environment
from ..record import InstallRecord, with_copies
from . import credentials, eventlog
from .boot import base_python, service_command
from .errors import ERROR_INVALID_LEVEL, ServiceControlError, scm_error, winerror
from .paths import credentials_dir, service_data_dir, service_key, start_cache_file
from .pywin32 import import_pywin32, win32_error
from .security import (
    FILE_MODIFY,
    NEED_READ,
    account_sids,
    check_reachable,
    grant_logon_right,
    grant_modify,
    needs_password,
    protect,
    virtual_account,
)

log = logging.getLogger("servicehost.platforms.windows")

#: The SCM's start type for each start mode (delayed = auto + DELAYED_AUTO_START_INFO).
START_TYPES = {"auto": 2, "delayed": 2, "manual": 3, "disabled": 4}
#: The ``Parameters`` value holding the install record (``record.py``).
RECORD_VALUE = "InstallRecord"
#: Extra time the SCM grants beyond ``stop_timeout`` at system shutdown (PRESHUTDOWN_INFO).
PRESHUTDOWN_MARGIN = 5.0


@dataclass
class InstallPlan:
    """Everything install/update computes before it touches the SCM."""

    name: str
    image: list[str]
    account: str
    account_sids: tuple[str, ...]
    start_type: int
    state_dir: Path
    working_directory: Path
    check: list[tuple[Path, int]] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    """The service key's ``Environment`` entries: plain ``K=V`` and ``NAME_FILE=<copy>`` (never a secret)."""
    secrets: list[tuple[Secret, bytes]] = field(default_factory=list, repr=False)
    """``--env NAME=@file``: read before anything is registered, copied by :func:`credentials.store_secrets`."""
    record: str = ""
    """The install record (``record.py``) as JSON: ``Parameters\\InstallRecord``."""


def plan_install(options: InstallOptions, command: list[str], account: str = "") -> InstallPlan:
    """The plan for ``options``; ``account``: the one to keep (update without ``--username``).
    Refuses (exit 2) before any change: code the account cannot read, a secret file that cannot be read."""
    image = service_command(command, name=options.name, prefix=sys.prefix, python=base_python(),
                            start_cache=str(start_cache_file(options.name)))
    account = account or options.account or virtual_account(options.name)
    state_dir = Path(options.state_dir) if options.state_dir else service_data_dir(options.name)
    workdir = Path(options.working_directory) if options.working_directory else state_dir
    result = InstallPlan(options.name, image, account, account_sids(account), START_TYPES[options.start_mode],
                         state_dir, workdir)
    result.check = [(path, NEED_READ) for path in code_paths(image, options)]
    check_reachable(result.name, result.account, result.account_sids, result.check)
    plain, secrets = split_environment(options.environment)
    copies = credentials_dir(options.name)
    result.environment = [f"{k}={v}" for k, v in plain] + [f"{s.variable}={copies / s.key}" for s in secrets]
    result.secrets = [(secret, secret.read()) for secret in secrets]  # ConfigError (exit 2) before any change
    result.record = InstallRecord(with_copies(options, copies), tuple(command)).to_json()  # names the copies
    return result


def code_paths(image: list[str], options: InstallOptions) -> list[Path]:
    """What the service account must be able to read: the interpreter and its DLL, pywin32,
    servicehost, the environment, the target's file and folder, the config file, the working folder."""
    import servicehost

    paths = [Path(image[0]), Path(image[0]).parent / f"python{sys.version_info[0]}{sys.version_info[1]}.dll"]
    paths.append(Path(str(getattr(import_pywin32("pywintypes"), "__file__", ""))))
    paths += [Path(servicehost.__file__).parent, Path(sys.prefix)]
    try:
        target = image[image.index("run") + 1]
    except (ValueError, IndexError):
        target = ""
    drive = target[:2] if re.match(r"[A-Za-z]:[\\/]", target) else ""
    file_part = drive + target[len(drive):].split(":")[0]
    if file_part.lower().endswith(".py"):
        paths += [Path(file_part), Path(file_part).parent]
    if options.config_file:
        paths.append(Path(options.config_file))
    if options.working_directory:
        paths.append(Path(options.working_directory))
    return [p for p in dict.fromkeys(paths) if str(p)]


def failure_actions(options: InstallOptions) -> tuple[int, list[int]]:
    """The recovery the SCM is given: (ResetPeriod in seconds, the delay of each restart action in
    ms). One action per step of ``restarts.delays`` (the SCM repeats the last one for every later
    failure); none with ``--no-restart``."""
    if not options.restart:
        return 0, []
    return (restarts.reset_period(options.restart_delay),
            [round(d * 1000) for d in restarts.delays(options.restart_delay)])


def configure_service(handle: Any, options: InstallOptions, plan: InstallPlan) -> None:
    """Write everything but the ImagePath, start type, dependencies and account (CreateService /
    ChangeServiceConfig set those) for the service ``handle`` opens."""
    ws = import_pywin32("win32service")
    name = options.name
    ws.ChangeServiceConfig2(handle, ws.SERVICE_CONFIG_DESCRIPTION, options.description or "")
    if options.start_mode == "delayed":
        if not change_config2(handle, ws.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, True, "delayed auto-start", "",
                       required=True):
            raise ServiceControlError(
                f"{name}: this Service Control Manager does not implement delayed auto-start "
                f"(ChangeServiceConfig2 DELAYED_AUTO_START_INFO: error {ERROR_INVALID_LEVEL}); "
                "install with --start auto instead")
    elif options.start_mode == "auto":  # clear a delay an earlier install set; nothing to clear if unsupported
        change_config2(handle, ws.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, False, "delayed auto-start", "", required=True)
    reset, delays = failure_actions(options)
    actions = {"ResetPeriod": reset, "RebootMsg": None, "Command": None,
               "Actions": [(ws.SC_ACTION_RESTART, ms) for ms in delays]}
    change_config2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS, actions, "failure actions",
            "a crashed service is not restarted")
    if options.restart:
        try:
            ws.QueryServiceConfig2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS)
        except win32_error() as exc:
            logs.windows_manager_lacks(log, name, "failure actions", winerror(exc) or 0,
                                       "the restart policy was not stored")
    change_config2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, bool(options.restart),
            "FAILURE_ACTIONS_FLAG", "recovery runs after crashes only, not after failure exits")
    change_config2(handle, ws.SERVICE_CONFIG_PRESHUTDOWN_INFO, int((options.stop_timeout + PRESHUTDOWN_MARGIN) * 1000),
            "preshutdown", "at system shutdown the SCM's own (short) shutdown timeout applies")
    if plan.account.lower().startswith("nt service\\"):
        change_config2(handle, ws.SERVICE_CONFIG_SERVICE_SID_INFO, ws.SERVICE_SID_TYPE_UNRESTRICTED,
                "service SIDs", "ACLs granted to the virtual account may not apply")
    credentials.store_secrets(plan.name, plan.account, plan.account_sids[0], plan.secrets)
    make_start_cache_folder(plan)
    write_parameters(name, plan)
    eventlog.register_event_source(name)
    if needs_password(plan.account):
        grant_logon_right(plan.account, plan.account_sids[0])
    grant_modify([plan.state_dir, plan.working_directory], plan.account, plan.account_sids[0])


def make_start_cache_folder(plan: InstallPlan) -> None:
    """The start cache's folder (``_startcache.py``), that only SYSTEM, Administrators and the
    service's account may write: the cache is code the service runs. Install and update set its
    DACL again (a changed account) and delete the file, so the next start begins afresh; a file
    the running service still writes stays, and is checked like any other at the next start."""
    cache = start_cache_file(plan.name)
    cache.parent.mkdir(parents=True, exist_ok=True)
    protect(cache.parent, plan.account, plan.account_sids[0], folder=True, account_mask=FILE_MODIFY,
            why="its start cache")
    try:
        cache.unlink(missing_ok=True)
    except OSError:
        pass


def change_config2(handle: Any, level: int, value: Any, what: str, consequence: str, required: bool = False) -> bool:
    """ChangeServiceConfig2; a level this SCM does not implement (error 124) is a warning unless
    ``required`` (then False is returned and the caller refuses)."""
    ws = import_pywin32("win32service")
    try:
        ws.ChangeServiceConfig2(handle, level, value)
    except win32_error() as exc:
        if winerror(exc) != ERROR_INVALID_LEVEL:
            raise scm_error(exc, f"set {what}") from None
        if required:
            return False
        logs.windows_manager_lacks(log, ws.QueryServiceConfig(handle)[8], what, ERROR_INVALID_LEVEL,
                                   consequence)  # [8]: the display name
    return True


def write_parameters(name: str, plan: InstallPlan) -> None:
    r"""The service key's ``Environment`` and ``Parameters\WorkingDirectory`` / ``StateDirectory``
    (``boot.apply_parameters`` reads them back in the service) / ``InstallRecord`` (the manager reads it)."""
    if sys.platform != "win32":  # no registry (and mypy checks winreg only on win32)
        raise PlatformUnavailable("the service key exists only on Windows")
    import winreg

    base = service_key(name)
    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, base, 0, winreg.KEY_ALL_ACCESS) as key:
        if plan.environment:
            winreg.SetValueEx(key, "Environment", 0, winreg.REG_MULTI_SZ, plan.environment)
        else:
            try:
                winreg.DeleteValue(key, "Environment")
            except FileNotFoundError:
                pass
    with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, base + r"\Parameters", 0, winreg.KEY_ALL_ACCESS) as key:
        winreg.SetValueEx(key, "WorkingDirectory", 0, winreg.REG_SZ, str(plan.working_directory))
        winreg.SetValueEx(key, "StateDirectory", 0, winreg.REG_SZ, str(plan.state_dir))
        winreg.SetValueEx(key, RECORD_VALUE, 0, winreg.REG_SZ, plan.record)


def read_parameter(name: str, value: str) -> str:
    r"""A value of the service's ``Parameters`` key ("" when there is none)."""
    if sys.platform != "win32":  # no registry (and mypy checks winreg only on win32)
        return ""
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, service_key(name) + r"\Parameters") as key:
            return str(winreg.QueryValueEx(key, value)[0])
    except OSError:
        return ""


__all__ = [
    "PRESHUTDOWN_MARGIN", "RECORD_VALUE", "START_TYPES", "InstallPlan", "change_config2", "code_paths", "configure_service",
    "failure_actions", "plan_install",
    "read_parameter", "write_parameters",
]
