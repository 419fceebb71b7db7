"""Helpers the real-manager tests share (not tests): waiting for an outside process, reading
``servicehost status``, and servicehost's own supervisord in a temp dir.

systemd is reached through ``with-systemd.sh`` (the ``systemd`` fixture of test_systemd_real.py)
and the SCM through Wine (``wine.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from servicehost.platforms.base import wait_until
from servicehost.stopping import Deadline

from ..conftest import IN_CI

T = TypeVar("T")
#: Seconds; only against hangs (a step here takes a few seconds at most).
HANG_GUARD = 60.0


def until(predicate: Callable[[], T], what: str, guard: float = HANG_GUARD) -> T:
    """Ask ``predicate()`` (an outside process's state) until it is truthy; its value. The guard
    is a hang guard only: AssertionError naming ``what`` when it passes."""
    return wait_until(predicate, Deadline.after(guard),
                      lambda: AssertionError(f"timed out after {guard:g}s waiting for {what}"))


def status_fields(text: str) -> dict[str, str]:
    """``servicehost status`` output as a dict (the first line of each key wins: a detail line may
    repeat a key, e.g. ``last exit: killed by SIGKILL``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def need_supervisor_package() -> None:
    """The real supervisor package (the ``supervisor``/``test`` extras); CI must have it."""
    if importlib.util.find_spec("supervisor") is None:
        reason = f"the supervisor package is not installed for {sys.executable}: pip install -e '.[test]'"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pid: int) -> None:
    """Until process ``pid`` has ended (SIGKILL and AssertionError after the hang guard)."""
    try:
        until(lambda: pid_gone(pid), f"process {pid} to end")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise


@contextlib.contextmanager
def supervisord_home() -> Iterator[Path]:
    """A temp folder for servicehost's own supervisord (``sv/``, short: socket paths are limited)
    and the services' runtime dirs (``run/``). Yields the folder; the environment that points
    servicehost at it is :func:`supervisord_env`. Afterwards supervisord is shut down (its
    programs with it) and the folder removed."""
    from servicehost.platforms.supervisord import SupervisordManager, owned_layout

    need_supervisor_package()
    path = Path(tempfile.mkdtemp(prefix="shs-"))
    try:
        yield path
    finally:
        manager = SupervisordManager(owned_layout(path / "sv"))
        pid = read_pid(manager.layout.pidfile)
        if manager.is_running():
            manager.rpc("shutdown")
        if pid is not None:
            wait_gone(pid)
        shutil.rmtree(path, ignore_errors=True)


def supervisord_env(home: Path) -> dict[str, str]:
    """The variables that make servicehost use the supervisord in ``home`` (see supervisord_home)."""
    return {"SERVICEHOST_SUPERVISORD_HOME": str(home / "sv"), "SERVICEHOST_RUNTIME_DIR": str(home / "run")}
