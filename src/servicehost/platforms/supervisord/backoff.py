"""The wait before a restart under supervisord, computed by servicehost (``platforms/restarts.py``
says the policy; supervisord restarts a crashed program at once and has no growing delay).

Each process of the service keeps a small record in its runtime directory (:data:`RECORD_FILE`,
JSON): its phase (``waiting``, ``running``, ``exited``), its exit code, the crashes in a row so
far, when it started running (the monotonic clock, shared by every process of one boot) and the
boot it ran in. A new process reads what the last one left (:func:`plan`): no record, another
boot, or an exit that is not a crash (0, 2, 3, 4) → no wait; a crash (exit 1 or 5, or no exit
written: killed) → one more crash in a row, or the first again when that run lasted
``restarts.HEALTHY`` seconds. It then waits ``restarts.delay()`` (:func:`wait_out`) before
starting anything; SIGTERM or SIGINT (``servicehost stop``, supervisord's stopsignal) ends the
wait at once and the process exits 0. ``status`` shows the wait as ``restarting``.

``servicehost start`` of a stopped program removes the record (an admin's start never waits);
the program file gives the delay (``SERVICEHOST_RESTART_DELAY``, absent with ``--no-restart``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from ...errors import ExitCode
from ...stopping import Deadline
from .. import restarts
from ..signal_inbox import SignalInbox
from .files import write_private

#: The restart record, in the service's runtime directory.
RECORD_FILE = "restart.json"
#: The program's environment variable carrying ``--restart-delay`` (seconds).
ENV_RESTART_DELAY = "SERVICEHOST_RESTART_DELAY"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
#: Signals that end the wait (a stop); SIGHUP (reload) is ignored while waiting.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

__all__ = ["ENV_RESTART_DELAY", "RECORD_FILE", "Record", "plan", "read_record", "restart_delay", "wait_out"]


class Record(NamedTuple):
    """What one process of the service left for the next one."""

    phase: str
    """``waiting`` (before a restart), ``running`` (started), ``exited`` (exit code below)."""
    crashes: int = 0
    """Crashes in a row that led to this process (0: it was not a restart after a crash)."""
    pid: int = 0
    since: float = 0.0
    """Monotonic clock when it started running."""
    until: float = 0.0
    """Monotonic clock when its wait ends (phase ``waiting``)."""
    exit: int | None = None
    boot: str = ""


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id ('' where the OS has none: records are then trusted across boots)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def restart_delay(env: Mapping[str, str]) -> float | None:
    """``--restart-delay`` as the program file gives it; None: no restart, so no wait."""
    try:
        value = float(env.get(ENV_RESTART_DELAY, ""))
    except ValueError:
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


def read_record(directory: Path) -> Record | None:
    try:
        record = Record(**json.loads((directory / RECORD_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    numbers = (record.crashes, record.pid, record.since, record.until)
    if not all(isinstance(n, (int, float)) for n in numbers) or not isinstance(record.exit, (int, type(None))):
        return None
    return record


def _write(directory: Path, record: Record) -> None:
    try:
        write_private(directory / RECORD_FILE, json.dumps(record._asdict()) + "\n", 0o644)
    except OSError:
        pass  # the next process then waits as after a first crash at most; the service runs on


def plan(directory: Path, delay_base: float, *, now: float | None = None, boot: str | None = None
         ) -> tuple[int, float]:
    """(crashes in a row, seconds to wait) for a process starting now, from the last one's record."""
    now = time.monotonic() if now is None else now
    boot = boot_id() if boot is None else boot
    last = read_record(directory)
    if last is None or last.boot != boot:
        return 0, 0.0
    if last.phase == "waiting":  # ended while waiting (killed): the same wait again
        crashes = last.crashes
    elif last.phase == "exited" and not _is_crash(last.exit):
        crashes = 0
    else:  # a crash: exited 1 or 5, or still "running" (killed)
        ran = now - last.since
        crashes = 1 if ran >= restarts.HEALTHY or ran < 0 else last.crashes + 1
    return crashes, restarts.delay(delay_base, crashes)


def _is_crash(code: int | None) -> bool:
    try:
        return code is not None and ExitCode(code).restartable
    except ValueError:
        return code is not None and code != 0  # not a servicehost code: supervisord restarts it


def waiting(directory: Path, crashes: int, seconds: float) -> None:
    now = time.monotonic()
    _write(directory, Record("waiting", crashes, os.getpid(), until=now + seconds, boot=boot_id()))


def running(directory: Path, crashes: int) -> None:
    _write(directory, Record("running", crashes, os.getpid(), since=time.monotonic(), boot=boot_id()))


def finish(directory: Path, code: int) -> None:
    last = read_record(directory)
    if last is not None and last.pid == os.getpid():
        _write(directory, last._replace(phase="exited", exit=int(code)))
    else:
        _write(directory, Record("exited", 0, os.getpid(), since=time.monotonic(), exit=int(code), boot=boot_id()))


def wait_out(seconds: float) -> str | None:
    """Wait ``seconds`` on the main thread unless a stop signal comes first: its name, else None.
    The signals are read from a socket (``signal_inbox``), so one is never held back until the
    wait ends; the previous handlers are restored."""
    with SignalInbox((*STOP_SIGNALS, signal.SIGHUP)) as inbox:
        deadline = Deadline.after(seconds)
        while not deadline.expired:
            signum = inbox.get(deadline.remaining())
            if signum is None:
                return None
            if signum in STOP_SIGNALS:
                return signal.Signals(signum).name
        return None
