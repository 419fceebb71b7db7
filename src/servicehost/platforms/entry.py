"""What the registry knows of a platform before importing it: one :class:`PlatformEntry` per
platform, declared as ``ENTRY`` in the platform's own (light) module, collected by
``platforms/__init__.py``. Adding a platform = one package with an ``ENTRY`` + one name in
``PLATFORMS`` (and its OS and markers in ``RUNS_WHERE``); nothing else changes.

This module imports nothing heavy and defines NamedTuples (cheap to define, unlike frozen
dataclasses): detection reads entries on every start.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import ExitCode

if TYPE_CHECKING:  # the same record to a type checker (``_records.py``)
    from typing import NamedTuple
else:
    from .._records import NamedTuple


class ManagerExitStatus(NamedTuple):
    """How one manager is told which exit codes are success and which must not restart."""

    success: tuple[int, ...]
    """Exit codes the manager counts as a clean stop."""
    prevent_restart: tuple[int, ...]
    """Failure codes the manager must not restart on (it would only fail again)."""


#: The exit-code meaning every manager is given, derived from ExitCode itself: success = not a
#: failure (OK, STOP_INCOMPLETE: a stop an admin asked for never triggers recovery);
#: prevent_restart = failures a restart cannot mend (CONFIG_ERROR, START_FAILURE).
EXIT_STATUS = ManagerExitStatus(
    success=tuple(c for c in ExitCode if not c.is_failure),
    prevent_restart=tuple(c for c in ExitCode if c.is_failure and not c.restartable),
)


class Refused(NamedTuple):
    """An install option a manager has no equivalent for: install stops with this reason."""

    reason: str


class PlatformEntry(NamedTuple):
    """A platform as the registry sees it, without importing its code."""

    name: str
    platform: str
    """``"module:Class"`` of the :class:`~servicehost.platforms.base.Platform`, imported when chosen."""
    run_markers: tuple[str, ...] = ()
    """Environment variables the manager leaves in its children: detection imports and asks the
    platform only when one is present (empty: always ask)."""
    os_names: tuple[str, ...] = ()
    """``sys.platform`` values the platform runs on (empty: any)."""
    exit_status: ManagerExitStatus | None = None
    """How its manager is told the exit codes (None: no manager, e.g. the foreground)."""
    options: Mapping[str, str | Refused] = MappingProxyType({})
    """Per install option (see ``base.OPTION_KEYS``): how the manager maps it, or why it is refused."""
