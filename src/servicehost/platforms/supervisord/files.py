"""The files servicehost keeps beside supervisord (written privately and atomically) and the
accounts they belong to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UsageError

if TYPE_CHECKING:  # pwd does not exist on Windows
    import pwd

__all__ = ["lookup_account", "read_int", "remove_tree", "write_private"]


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically, created with ``mode`` (never briefly wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def lookup_account(name: str) -> pwd.struct_passwd | None:
    if not name:
        return None
    import pwd

    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--username {name}: no such account on this machine") from None
    if account.pw_uid != os.geteuid() and os.geteuid() != 0:
        raise UsageError(f"--username {name}: supervisord can switch to another account only when it runs "
                         "as root; install as root, or leave --username out to run as yourself")
    return account
