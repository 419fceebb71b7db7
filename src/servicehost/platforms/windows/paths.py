r"""Where a Windows service's things live: its files under ``%ProgramData%\servicehost``, its registry key.

``<name>\`` holds the Event Log message file (``messages.dll``) and, unless ``--state-dir`` says
otherwise, the state directory (logs, data); ``credentials\<name>\`` holds the copies of its
``--env NAME=@file`` secrets and ``start-cache\<name>\`` its start cache (``_startcache.py``) — both
outside the state directory, whose inheritable grants must not reach them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def program_data(env: Mapping[str, str] | None = None) -> Path:
    r"""``%ProgramData%\servicehost``."""
    env = os.environ if env is None else env
    return Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / "servicehost"


def service_data_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """``%ProgramData%\\servicehost\\<name>``: where install puts the Event Log message file."""
    return program_data(env) / name


def credentials_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    """``%ProgramData%\\servicehost\\credentials\\<name>``: copies of the service's ``--env NAME=@file``
    secrets, each readable by SYSTEM, Administrators and the service's account only
    (``security.secret_aces``); the service gets ``NAME_FILE`` = the copy's path."""
    return program_data(env) / "credentials" / name


def start_cache_file(name: str, env: Mapping[str, str] | None = None) -> Path:
    """``%ProgramData%\\servicehost\\start-cache\\<name>\\modules.bin``: the service's start cache
    (``servicehost/_startcache.py``); its folder writable by SYSTEM, Administrators and the service's
    account only (it holds code the service runs)."""
    return program_data(env) / "start-cache" / name / "modules.bin"


def message_file_path(name: str, env: Mapping[str, str] | None = None) -> Path:
    """The generated Event Log message file of service ``name``."""
    return service_data_dir(name, env) / "messages.dll"


#: Where the SCM keeps each service's configuration (HKEY_LOCAL_MACHINE).
SERVICES_KEY = r"SYSTEM\CurrentControlSet\Services"


def service_key(name: str) -> str:
    r"""``SYSTEM\CurrentControlSet\Services\<name>``: its ``Environment``, and ``Parameters\`` (servicehost's
    ``WorkingDirectory`` and ``StateDirectory``)."""
    return rf"{SERVICES_KEY}\{name}"


def remove_tree(path: Path) -> None:
    """Remove a folder with what it holds, or a file; nothing there is fine."""
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


__all__ = [
    "SERVICES_KEY", "credentials_dir", "message_file_path", "program_data", "remove_tree", "service_data_dir",
    "service_key", "start_cache_file",
]
