"""Platforms: the one list of service managers, and ``detect()``, the one place one is chosen.

Each platform is a module or package ``servicehost.platforms.<name>`` whose light top level
declares ``ENTRY`` (:class:`~servicehost.platforms.entry.PlatformEntry`): the class to import when
chosen, the environment markers its manager leaves in its children, the operating systems it runs
on, how its manager is told the exit codes, and how it maps each install option. The registry
collects them; a platform's code is imported only when it is chosen, so ``import servicehost``
never loads pywin32. Adding a platform = one package + one name in ``PLATFORMS`` (and its
OS and markers in ``RUNS_WHERE``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import PlatformUnavailable
from .entry import ManagerExitStatus, PlatformEntry

if TYPE_CHECKING:  # the contracts import the host: not needed to read the registry
    from .base import Platform

#: Platform names, in detection order; foreground last (it is always present).
PLATFORMS: tuple[str, ...] = ("windows", "systemd", "supervisord", "foreground")

#: Each platform's ``(os_names, run_markers)`` as its ``ENTRY`` declares them (a test holds the
#: two equal): ``detect`` reads its first filter here, so that a start imports no platform package
#: but the one it runs under (the three others cost ~0.4 ms).
RUNS_WHERE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "windows": (("win32",), ()),
    "systemd": ((), ("NOTIFY_SOCKET", "INVOCATION_ID")),
    "supervisord": ((), ("SUPERVISOR_ENABLED",)),
    "foreground": ((), ()),
}


def entry(name: str) -> PlatformEntry:
    """What the registry knows of platform ``name`` (imports only its light top level)."""
    if name not in PLATFORMS:
        raise PlatformUnavailable(f"no platform {name!r}; known: {', '.join(PLATFORMS)} (see: servicehost managers)")
    found: PlatformEntry = importlib.import_module(f"{__name__}.{name}").ENTRY
    return found


def exit_status(name: str) -> ManagerExitStatus:
    """How manager ``name`` is told which exit codes are success and which must not restart."""
    status = entry(name).exit_status
    if status is None:
        raise PlatformUnavailable(f"{name} is not a service manager (it has no exit-status mapping)")
    return status


def load(name: str) -> Platform:
    """The platform called ``name``; PlatformUnavailable if there is no such platform."""
    module, _, cls = entry(name).platform.partition(":")
    return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]


def detect(env: Mapping[str, str] | None = None, choice: str = "auto") -> tuple[Platform, str]:
    """The platform this process runs under, and why. ``choice`` overrides detection."""
    env = os.environ if env is None else env
    if choice != "auto":
        platform = load(choice)
        return platform, "chosen with --manager"
    for name in PLATFORMS:
        if f"{__name__}.{name}" not in sys.modules and not _runs_where(*RUNS_WHERE[name], env):
            continue  # not even its entry is worth importing
        if not _may_run_under(entry(name), env):
            continue  # not worth importing: its modules are big and a foreground run needs none
        platform = load(name)
        reason = platform.detect(env)
        if reason:
            return platform, reason
    raise PlatformUnavailable("no platform detected")  # unreachable: foreground always detects


def _may_run_under(e: PlatformEntry, env: Mapping[str, str]) -> bool:
    """A cheap first filter for ``detect``: the OS, and the markers its manager leaves. A platform
    whose code is already imported (e.g. the Windows service boot) is always asked."""
    if e.platform.partition(":")[0] in sys.modules:
        return True
    return _runs_where(e.os_names, e.run_markers, env)


def _runs_where(os_names: tuple[str, ...], run_markers: tuple[str, ...], env: Mapping[str, str]) -> bool:
    if os_names and sys.platform not in os_names:
        return False
    return not run_markers or any(m in env for m in run_markers)


def managers_here(env: Mapping[str, str] | None = None) -> list[Platform]:
    """Every service manager whose installed services may be on this machine (``holds_services``),
    in list order: where ``servicehost list`` looks and where a NAME is looked up."""
    env = os.environ if env is None else env
    found = []
    for name in PLATFORMS:
        e = entry(name)
        if e.exit_status is None or (e.os_names and sys.platform not in e.os_names):
            continue  # not a manager, or not one of this OS: not worth importing
        platform = load(name)
        if platform.holds_services(env):
            found.append(platform)
    return found


def detect_for_install(env: Mapping[str, str] | None = None, choice: str = "auto") -> tuple[Platform, str]:
    """The manager to install into, and why: ``choice``, else the first platform (in list order)
    whose ``installable(env)`` gives a reason. PlatformUnavailable when none can install here."""
    env = os.environ if env is None else env
    if choice != "auto":
        return load(choice), "chosen with --manager"
    for name in PLATFORMS:
        platform = load(name)
        installable = getattr(platform, "installable", None)
        reason = installable(env) if installable else None
        if reason:
            return platform, reason
    raise PlatformUnavailable("no service manager to install into was found here; choose one with --manager")
