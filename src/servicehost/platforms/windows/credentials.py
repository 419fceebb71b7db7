r"""Copies of a service's ``--env NAME=@file`` secrets, in ``%ProgramData%\servicehost\credentials\<name>``.

The service key's ``Environment`` holds only ``NAME_FILE=<copy>``, never the secret. Each copy (and the
folder, first) gets the protected DACL of ``security.secret_aces``: SYSTEM and Administrators full
control, the service's own account read, nobody else anything. ``update`` replaces the copies,
``remove`` deletes them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..base import Secret
from .paths import credentials_dir, remove_tree
from .security import protect


def store_secrets(name: str, account: str, account_sid: str, secrets: Sequence[tuple[Secret, bytes]]) -> None:
    """Make ``credentials\\<name>`` hold exactly ``secrets``: the folder's DACL is set (protected)
    before anything is written into it, each copy gets the same DACL and replaces the old one
    atomically (MoveFileEx REPLACE_EXISTING)."""
    own = credentials_dir(name)
    if not secrets:
        remove_tree(own)
        return
    own.mkdir(parents=True, exist_ok=True)
    protect(own, account, account_sid, folder=True)
    for secret, data in secrets:
        tmp = own / f".{secret.key}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            protect(tmp, account, account_sid, folder=False)
            os.replace(tmp, own / secret.key)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    keep = {secret.key for secret, _ in secrets}
    for old in own.iterdir():  # secrets no longer given, and leftovers of an interrupted write
        if old.name not in keep:
            old.unlink()


def remove_secrets(name: str) -> None:
    """Delete the service's copies (its secrets go with it, ``--purge`` or not)."""
    remove_tree(credentials_dir(name))


__all__ = ["remove_secrets", "store_secrets"]
