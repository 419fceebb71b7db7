"""Platforms: the one table of service managers, and ``detect()``, the one place one is chosen.

Modules are imported only when chosen, so ``import servicehost`` never loads pywin32.
Manager issues add rows here (and their commands to ``cli.COMMANDS``); nothing else changes.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping

from ..errors import PlatformUnavailable
from .base import Platform

#: name → "module:Class", in detection order; foreground last (it is always present).
PLATFORMS: dict[str, str] = {
    "windows": "servicehost.platforms.windows:WindowsPlatform",
    "systemd": "servicehost.platforms.systemd:SystemdPlatform",
    "supervisord": "servicehost.platforms.supervisord:SupervisordPlatform",
    "foreground": "servicehost.platforms.foreground:ForegroundPlatform",
}


def load(name: str) -> Platform:
    """The platform called ``name``; PlatformUnavailable if there is no such platform."""
    try:
        spec = PLATFORMS[name]
    except KeyError:
        raise PlatformUnavailable(
            f"no platform {name!r}; known: {', '.join(PLATFORMS)} (see: servicehost managers)") from None
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]


def detect(env: Mapping[str, str] | None = None, choice: str = "auto") -> tuple[Platform, str]:
    """The platform this process runs under, and why. ``choice`` overrides detection."""
    env = os.environ if env is None else env
    if choice != "auto":
        platform = load(choice)
        return platform, "chosen with --manager"
    for name in PLATFORMS:
        if not _may_run_under(name, env):
            continue  # not worth importing: its modules are big and a foreground run needs none
        platform = load(name)
        reason = platform.detect(env)
        if reason:
            return platform, reason
    raise PlatformUnavailable("no platform detected")  # unreachable: foreground always detects


#: A cheap first filter for ``detect``: the environment every manager leaves in its children.
#: A platform is imported and asked only when one of its markers is present.
RUN_MARKERS: dict[str, tuple[str, ...]] = {
    "systemd": ("NOTIFY_SOCKET", "INVOCATION_ID"),
    "supervisord": ("SUPERVISOR_ENABLED",),
}


def _may_run_under(name: str, env: Mapping[str, str]) -> bool:
    if name == "windows":
        return sys.platform == "win32" or "servicehost.platforms.windows" in sys.modules
    markers = RUN_MARKERS.get(name)
    return markers is None or any(m in env for m in markers)


def detect_for_install(env: Mapping[str, str] | None = None, choice: str = "auto") -> tuple[Platform, str]:
    """The manager to install into, and why: ``choice``, else the first platform (in table order)
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
