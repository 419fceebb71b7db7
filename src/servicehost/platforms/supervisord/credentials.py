"""``--env NAME=@file`` under supervisord: the service gets ``NAME_FILE``, the path of a copy in
``<supervisord home>/credentials/<service>/NAME`` (mode 0400 in a 0700 folder, both owned by the
service's account, else by the installing user); never the secret itself."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UsageError
from ..base import InstallOptions, Secret, split_environment
from .files import remove_tree
from .layout import ENV_HOME, Layout

if TYPE_CHECKING:  # pwd does not exist on Windows
    import pwd

__all__ = ["read_secrets", "store_secrets"]


def read_secrets(options: InstallOptions) -> list[tuple[Secret, bytes]]:
    """Every ``--env NAME=@file`` secret's bytes (ConfigError, one line, for a file that cannot be read)."""
    return [(secret, secret.read()) for secret in split_environment(options.environment)[1]]


def store_secrets(layout: Layout, name: str, secrets: Sequence[tuple[Secret, bytes]],
                  account: pwd.struct_passwd | None) -> None:
    """Make ``credentials/<name>/`` hold exactly these secrets: each replaced atomically, created
    0400 and owned by ``account`` (else the installing user) in a 0700 folder it owns."""
    own = layout.credentials_dir(name)
    if not secrets:
        remove_tree(own)
        return
    uid, gid = (account.pw_uid, account.pw_gid) if account is not None else (os.geteuid(), os.getegid())
    own.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(own.parent, 0o711)  # the accounts may pass through, not list who has secrets
    with contextlib.suppress(FileExistsError):
        own.mkdir(mode=0o700)
    if own.is_symlink() or not own.is_dir():
        raise UsageError(f"{own} is not a folder: remove it, then install again")
    if (uid, gid) != (os.geteuid(), os.getegid()):
        os.chown(own, uid, gid, follow_symlinks=False)
    os.chmod(own, 0o700)
    for secret, data in secrets:
        _write_secret(own / secret.key, data, uid, gid)
    keep = {secret.key for secret, _ in secrets}
    for old in own.iterdir():  # secrets no longer given, and leftovers of an interrupted write
        if old.name not in keep:
            old.unlink()
    if account is not None and (where := _unreachable(own, account)):
        raise UsageError(f"--env {secrets[0][0].key}=@...: account {account.pw_name} cannot reach its "
                         f"secrets in {own}: {where}; choose a supervisord home it can enter ({ENV_HOME})")


def _write_secret(path: Path, data: bytes, uid: int, gid: int) -> None:
    """Replace ``path`` atomically by a file holding ``data``, mode 0400, owned by ``uid:gid`` from
    its creation on (never readable by anyone else, not even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
    try:
        try:
            if (uid, gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o400)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _unreachable(path: Path, account: pwd.struct_passwd) -> str | None:
    """Why ``account`` cannot enter every folder above ``path`` (None: it can)."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for folder in reversed(path.parents):
        st = folder.stat()
        if account.pw_uid == 0:
            continue
        bit = 0o100 if st.st_uid == account.pw_uid else 0o010 if st.st_gid in groups else 0o001
        if not st.st_mode & bit:
            return f"{folder} (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}) does not let it in"
    return None
