"""Helpers of the intake tests: start the test service on a store, read its record of runs."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from ..integration.proc import ServiceProcess

SERVICE = str(Path(__file__).with_name("intake_service.py"))


def start(tmp: Path, *flags: str, ready: bool = True) -> ServiceProcess:
    """``servicehost run intake_service.py`` on ``tmp``'s store, recording into ``tmp/record``."""
    svc = ServiceProcess("run", SERVICE, "--store", store_url(tmp), "--record", str(tmp / "record"),
                         "--state-dir", str(tmp / "state"), "--log-file", "none", *flags)
    if ready:
        svc.ready()
    return svc


def store_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'jobs.sqlite3'}"


class Run(NamedTuple):
    kind: str  # S: started, D: done (the handler is about to return)
    job: int
    attempt: int
    pid: int
    at: float  # time.time() of the line


def runs(tmp: Path) -> list[Run]:
    path = tmp / "record"
    if not path.exists():
        return []
    out = []
    text = path.read_text()
    # A service may be appending while this reads: a last line without its newline is not whole yet.
    for line in text[:text.rfind("\n") + 1].splitlines():
        kind, job, attempt, pid, at = line.split()
        out.append(Run(kind, int(job), int(attempt), int(pid), float(at)))
    return out


def by_job(tmp: Path, kind: str = "D") -> dict[int, list[Run]]:
    out: dict[int, list[Run]] = defaultdict(list)
    for r in runs(tmp):
        if r.kind == kind:
            out[r.job].append(r)
    return out


def wait_until(predicate, timeout: float, what: str, every: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true (a hang guard of ``timeout`` seconds, never a speed assertion)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within the {timeout:g}s hang guard: {what}")
        time.sleep(every)
