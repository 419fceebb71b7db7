"""Accounts and access: who a service runs as, and what that account may touch.

Pure parts (tested on every OS): the virtual account ``NT SERVICE\\<name>`` and its SID, which
accounts need a password, Windows' in-order DACL evaluation (:func:`granted_access`) and the DACL of
secret copies (:func:`secret_aces`). Through ``win32security``: the SIDs an account's token holds
(:func:`account_sids`), reading and setting DACLs, the install-time reachability check
(:func:`check_reachable`: can the account read the interpreter, the DLLs, the code), the right to log
on as a service, and write access to the state folders.
"""

from __future__ import annotations

import logging
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ... import logs
from .errors import ServiceControlError, scm_error, strerror
from .pywin32 import import_pywin32, win32_error

log = logging.getLogger("servicehost.platforms.windows")

SE_SERVICE_LOGON_RIGHT = "SeServiceLogonRight"
#: Accounts that have no password (built-in, virtual, managed service accounts).
BUILTIN_ACCOUNTS = {
    "localsystem": "S-1-5-18", ".\\localsystem": "S-1-5-18", "nt authority\\system": "S-1-5-18",
    "nt authority\\localservice": "S-1-5-19", "nt authority\\local service": "S-1-5-19",
    "nt authority\\networkservice": "S-1-5-20", "nt authority\\network service": "S-1-5-20",
}
#: Groups every service token holds: Everyone, Authenticated Users, Users, SERVICE, LOCAL.
SERVICE_GROUP_SIDS = ("S-1-1-0", "S-1-5-11", "S-1-5-32-545", "S-1-5-6", "S-1-2-0")
# File access masks (winnt.h): what "reachable" means for the account.
FILE_READ_DATA, FILE_WRITE_DATA, FILE_APPEND_DATA, FILE_EXECUTE = 0x1, 0x2, 0x4, 0x20
NEED_READ = FILE_READ_DATA | FILE_EXECUTE       # read a file / list a folder, and run / traverse it
NEED_WRITE = FILE_WRITE_DATA | FILE_APPEND_DATA
FILE_ALL_ACCESS, FILE_GENERIC_READ = 0x1F01FF, 0x120089
FILE_MODIFY = 0x1301BF  # read, write, execute and delete: what Explorer calls "Modify"
SYSTEM_SID, ADMINISTRATORS_SID = "S-1-5-18", "S-1-5-32-544"


def virtual_account(name: str) -> str:
    return f"NT SERVICE\\{name}"


def virtual_account_sid(name: str) -> str:
    """The SID of ``NT SERVICE\\<name>``: S-1-5-80- and the SHA-1 of the upper-cased UTF-16LE name.

    Computed, not looked up: the SCM knows the account only once the service exists.
    """
    import hashlib

    digest = hashlib.sha1(name.upper().encode("utf-16-le")).digest()
    return "S-1-5-80-" + "-".join(str(n) for n in struct.unpack("<5I", digest))


def needs_password(account: str) -> bool:
    """False for accounts that have no password: built-in, virtual (NT SERVICE\\x), managed (x$)."""
    lowered = account.lower()
    return not (lowered in BUILTIN_ACCOUNTS or lowered.startswith("nt service\\") or lowered.endswith("$"))


@dataclass(frozen=True)
class Ace:
    """One access control entry, reduced to what an access check needs."""

    allow: bool
    mask: int
    sid: str
    inherit_only: bool = False


def granted_access(aces: Sequence[Ace] | None, sids: Iterable[str]) -> int:
    """The access bits a DACL grants a token holding ``sids`` (Windows' in-order evaluation:
    a bit denied before it is allowed stays denied). ``None`` is a NULL DACL: everything."""
    if aces is None:
        return 0xFFFFFFFF
    held = set(sids)
    allowed = denied = 0
    for ace in aces:
        if ace.inherit_only or ace.sid not in held:
            continue
        if ace.allow:
            allowed |= ace.mask & ~denied
        else:
            denied |= ace.mask & ~allowed
    return allowed


def secret_aces(account_sid: str, account_mask: int = FILE_GENERIC_READ) -> list[Ace]:
    """The whole DACL of a service's own protected files (set protected: nothing inherited): SYSTEM
    and Administrators full control, the service's own account (its SID) ``account_mask`` (its
    secret copies: read; its start cache: modify), nobody else anything."""
    aces = [Ace(True, FILE_ALL_ACCESS, SYSTEM_SID), Ace(True, FILE_ALL_ACCESS, ADMINISTRATORS_SID)]
    if account_sid not in (SYSTEM_SID, ADMINISTRATORS_SID):
        aces.append(Ace(True, account_mask, account_sid))
    return aces


def account_sids(account: str) -> tuple[str, ...]:
    """The SIDs a token of ``account`` holds: its own first, then its groups (built-in, virtual and
    local accounts; a domain account's domain groups are not known here)."""
    lowered = account.lower()
    if lowered in BUILTIN_ACCOUNTS:
        own = BUILTIN_ACCOUNTS[lowered]
        return (own, ADMINISTRATORS_SID, *SERVICE_GROUP_SIDS) if own == SYSTEM_SID else (own, *SERVICE_GROUP_SIDS)
    if lowered.startswith("nt service\\"):
        return (virtual_account_sid(account.split("\\", 1)[1]), "S-1-5-80-0", *SERVICE_GROUP_SIDS)
    security = import_pywin32("win32security")
    try:
        sid = security.LookupAccountName(None, account)[0]
    except win32_error() as exc:
        raise ServiceControlError(f"account {account!r} not found ({strerror(exc)}): give DOMAIN\\user or .\\user") from None
    sids = [security.ConvertSidToStringSid(sid), *SERVICE_GROUP_SIDS]
    try:
        net = import_pywin32("win32net")
        user = account.split("\\")[-1]
        for group in net.NetUserGetLocalGroups(None, user):
            sids.append(security.ConvertSidToStringSid(security.LookupAccountName(None, group)[0]))
    except win32_error() as exc:  # domain accounts: their groups are not known here
        logs.windows_account_groups_unknown(log, account, exc)
    return tuple(sids)


def read_dacl(path: Path) -> list[Ace] | None:
    """The DACL of a file or folder (None: a NULL DACL, which grants everything)."""
    security = import_pywin32("win32security")
    sd = security.GetNamedSecurityInfo(str(path), security.SE_FILE_OBJECT, security.DACL_SECURITY_INFORMATION)
    dacl = sd.GetSecurityDescriptorDacl()
    if dacl is None:
        return None
    aces = []
    for i in range(dacl.GetAceCount()):
        (ace_type, flags), mask, sid = dacl.GetAce(i)[:3]
        if ace_type in (security.ACCESS_ALLOWED_ACE_TYPE, security.ACCESS_DENIED_ACE_TYPE):
            aces.append(Ace(ace_type == security.ACCESS_ALLOWED_ACE_TYPE, mask & 0xFFFFFFFF,
                            security.ConvertSidToStringSid(sid), bool(flags & security.INHERIT_ONLY_ACE)))
    return aces


def check_reachable(name: str, account: str, sids: Sequence[str], check: Iterable[tuple[Path, int]]) -> None:
    """Refuse (ServiceControlError) when ``account`` lacks the access ``check`` lists; for a named
    account, whose domain groups may grant it, only warn."""
    if sids[0] == SYSTEM_SID:
        return  # LocalSystem
    problems = []
    for path, need in check:
        if not path.exists():
            problems.append(f"{path} does not exist (is everything installed into {sys.prefix}?)")
            continue
        granted = granted_access(read_dacl(path), sids)
        if granted & need != need:
            flags = "(OI)(CI)RX" if path.is_dir() else "RX"
            problems.append(f"{account} cannot read {path}: grant it with "
                            f"icacls \"{path}\" /grant \"{account}:{flags}\", or install to a shared folder")
    if not problems:
        return
    text = f"{name}: the service account cannot reach what the service needs: " + "; ".join(problems)
    if account.lower().startswith("nt service\\") or account.lower() in BUILTIN_ACCOUNTS:
        raise ServiceControlError(text)
    logs.windows_access_warning(log, text + " (its domain groups may grant it; not checked)")


def protect(path: Path, account: str, account_sid: str, *, folder: bool, account_mask: int = FILE_GENERIC_READ,
            why: str = "--env NAME=@file") -> None:
    """Set :func:`secret_aces` as the whole, protected DACL of ``path`` (inherited by what a
    folder will hold); ``why`` names what needs it in the error."""
    security = import_pywin32("win32security")
    inherit = security.OBJECT_INHERIT_ACE | security.CONTAINER_INHERIT_ACE if folder else 0
    dacl = security.ACL()
    for ace in secret_aces(account_sid, account_mask):
        dacl.AddAccessAllowedAceEx(security.ACL_REVISION_DS, inherit, ace.mask,
                                   security.ConvertStringSidToSid(ace.sid))
    try:
        security.SetNamedSecurityInfo(
            str(path), security.SE_FILE_OBJECT,
            security.DACL_SECURITY_INFORMATION | security.PROTECTED_DACL_SECURITY_INFORMATION,
            None, None, dacl, None)
    except win32_error() as exc:
        raise scm_error(exc, f"restrict {path} to SYSTEM, Administrators and {account} ({why})") from None


def grant_logon_right(account: str, account_sid: str) -> None:
    """Give ``account`` the right to log on as a service (what services.msc does on install)."""
    security = import_pywin32("win32security")
    try:
        policy = security.LsaOpenPolicy(None, security.POLICY_ALL_ACCESS)
        try:
            sid = security.ConvertStringSidToSid(account_sid)
            security.LsaAddAccountRights(policy, sid, [SE_SERVICE_LOGON_RIGHT])
        finally:
            security.LsaClose(policy)
    except win32_error() as exc:
        raise scm_error(exc, f"grant {account} the right to log on as a service") from None


def grant_modify(paths: Iterable[Path], account: str, account_sid: str) -> None:
    """Create each folder and let ``account`` modify it and what it will hold."""
    security = import_pywin32("win32security")
    ntsecuritycon = import_pywin32("ntsecuritycon")
    sid = security.ConvertStringSidToSid(account_sid)
    for path in dict.fromkeys(paths):
        path.mkdir(parents=True, exist_ok=True)
        if account_sid == SYSTEM_SID:
            continue  # LocalSystem can already
        try:
            sd = security.GetNamedSecurityInfo(str(path), security.SE_FILE_OBJECT,
                                               security.DACL_SECURITY_INFORMATION)
            dacl = sd.GetSecurityDescriptorDacl() or security.ACL()
            dacl.AddAccessAllowedAceEx(
                security.ACL_REVISION_DS, security.OBJECT_INHERIT_ACE | security.CONTAINER_INHERIT_ACE,
                ntsecuritycon.FILE_GENERIC_READ | ntsecuritycon.FILE_GENERIC_WRITE
                | ntsecuritycon.FILE_GENERIC_EXECUTE | ntsecuritycon.DELETE, sid)
            security.SetNamedSecurityInfo(str(path), security.SE_FILE_OBJECT,
                                          security.DACL_SECURITY_INFORMATION, None, None, dacl, None)
        except win32_error() as exc:
            raise scm_error(exc, f"let {account} write {path}") from None


__all__ = [
    "ADMINISTRATORS_SID", "BUILTIN_ACCOUNTS", "FILE_ALL_ACCESS", "FILE_MODIFY", "FILE_APPEND_DATA", "FILE_EXECUTE",
    "FILE_GENERIC_READ", "FILE_READ_DATA", "FILE_WRITE_DATA", "NEED_READ", "NEED_WRITE",
    "SERVICE_GROUP_SIDS", "SE_SERVICE_LOGON_RIGHT", "SYSTEM_SID", "Ace", "account_sids", "check_reachable",
    "grant_logon_right", "grant_modify", "granted_access", "needs_password", "protect", "read_dacl",
    "secret_aces", "virtual_account", "virtual_account_sid",
]
