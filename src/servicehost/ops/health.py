"""Health checks a service declares, and the probes' verdicts built from them.

A service declares a check in ``start()``::

    self.health_check("database", self.ping_db, timeout=2.0, tags=("ready",))

``fn()`` returns a :class:`Health` (or ``(Health, "detail")``, or a bool, or None for healthy);
raising is :attr:`Health.UNHEALTHY` with the exception as the detail. Each check:

* runs on a thread of its own, at most one run at a time; a probe waits for it at most
  ``timeout`` seconds, then counts it UNHEALTHY ("timed out") — a run still going is waited for
  again, never started twice, so a stuck dependency costs one thread, not one per probe;
* keeps its result ``cache`` seconds: probes more frequent than that reuse it;
* is tagged ``ready`` (``/readyz``: out of rotation while it fails; the default) and/or ``live``
  (``/livez``: restart me while it fails — only for what a restart fixes, never a dependency, or
  one database outage restarts every replica).

Verdicts (:func:`readiness`, :func:`liveness`) follow Kubernetes' ``/readyz`` and ``/livez`` and
.NET's mapping: HEALTHY and DEGRADED pass (200), UNHEALTHY fails (503).

    readiness   the host is RUNNING (not starting, paused, draining or stopping) and every ``ready``
                check passes
    liveness    no worker hung past ``hang_timeout`` (heartbeats), the host has not failed, and
                every ``live`` check passes; a service starting, draining or stopping is alive

It reads the host and the services' declared checks; it imports no platform.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import logs
from ..errors import describe_error
from ..lifecycle import HostState
from ..stopping import Deadline

if TYPE_CHECKING:
    from ..host import Host

log = logging.getLogger("servicehost.ops")

#: The tags a check may carry: which probe it gates.
TAGS = frozenset({"ready", "live"})
#: The host states in which ``/readyz`` can pass: only RUNNING takes new work. PAUSED (and pausing,
#: resuming) is out of rotation as well: its workers take no task, so a balancer must send none.
READY_STATE = HostState.RUNNING


class Health(enum.Enum):
    """A check's verdict. DEGRADED still passes a probe (it works, worse than it should)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def passes(self) -> bool:
        return self is not Health.UNHEALTHY


@dataclass(frozen=True)
class CheckResult:
    """One run's outcome: the verdict, a one-line detail, when it finished (``time.time()``) and
    how long it took (seconds; for a time-out, how long it was waited for)."""

    name: str
    health: Health
    detail: str
    at: float
    duration: float
    tags: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "health": self.health.value, "detail": self.detail, "at": self.at,
                "duration": round(self.duration, 6), "tags": list(self.tags)}


class _Run:
    """One run of a check under way: who waits for it waits on ``done``."""

    __slots__ = ("started", "done", "result")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: CheckResult | None = None


class HealthCheck:
    """A named check (see the module docstring); thread-safe."""

    def __init__(self, name: str, fn: Callable[[], object], *, timeout: float = 5.0, cache: float = 5.0,
                 tags: Iterable[str] = ("ready",)) -> None:
        if not name or any(ord(c) < 32 for c in name):
            raise ValueError(f"a health check needs a one-line name, got {name!r}")
        if not callable(fn):
            raise TypeError(f"health check {name!r}: {fn!r} is not callable")
        if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
            raise ValueError(f"health check {name!r}: timeout must be 0 < seconds <= 3600, got {timeout!r}")
        if not (isinstance(cache, (int, float)) and 0 <= cache <= 86400):
            raise ValueError(f"health check {name!r}: cache must be 0 <= seconds <= 86400, got {cache!r}")
        tags = (tags,) if isinstance(tags, str) else tuple(tags)
        if not tags or not set(tags) <= TAGS:
            raise ValueError(f"health check {name!r}: tags are one or more of {sorted(TAGS)}, got {tags!r}")
        self.name = name
        self.fn = fn
        self.timeout = float(timeout)
        self.cache = float(cache)
        self.tags = tags
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._last: CheckResult | None = None
        self._last_mono = 0.0  # when the last result was made (monotonic), for the cache

    @property
    def last(self) -> CheckResult | None:
        """The latest result, without running the check (None: it never ran)."""
        return self._last

    def refresh(self) -> CheckResult | None:
        """The latest result, at once; when it is stale, a run starts in the background (unless one
        is under way) for whoever asks next (the status page, which never waits for a check)."""
        with self._lock:
            if self._run is None and (self._last is None or time.monotonic() - self._last_mono >= self.cache):
                self._start()
            return self._last

    def _start(self) -> _Run:
        run = self._run = _Run()
        threading.Thread(target=self._execute, args=(run,), name=f"servicehost-health-{self.name}",
                         daemon=True).start()
        return run

    def result(self) -> CheckResult:
        """The cached result while it is fresh; else run the check (or join the run under way)
        and wait for it at most until ``timeout`` after that run began."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last_mono < self.cache:
                return self._last
            run = self._run or self._start()
        deadline = Deadline(run.started + self.timeout)
        if run.done.wait(deadline.remaining()) and run.result is not None:
            return run.result
        waited = time.monotonic() - run.started
        late = CheckResult(self.name, Health.UNHEALTHY, f"timed out: no answer after {waited:.1f}s "
                           f"(timeout {self.timeout:g}s)", time.time(), waited, self.tags)
        with self._lock:
            if self._run is run:  # still running: this is the result until it returns
                self._record(late)
        return late

    def _execute(self, run: _Run) -> None:
        try:
            health, detail = outcome(self.fn())
        except Exception as exc:  # a failing check is a verdict, not a crash
            health, detail = Health.UNHEALTHY, one_line(describe_error(exc, limit=2000))
        result = CheckResult(self.name, health, detail, time.time(), time.monotonic() - run.started, self.tags)
        with self._lock:
            run.result = result
            self._run = None
            self._record(result)
        run.done.set()

    def _record(self, result: CheckResult) -> None:
        """Keep ``result`` (under the lock); log a change of verdict."""
        before = self._last.health if self._last is not None else None
        self._last, self._last_mono = result, time.monotonic()
        if result.health is not before and not (before is None and result.health is Health.HEALTHY):
            event = logs.health_check_passing if result.health is Health.HEALTHY else logs.health_check_failing
            event(log, self.name, before.value if before else "first run", result.health.value, result.detail or "-")


def outcome(value: object) -> tuple[Health, str]:
    """What a check's return value says: a Health, ``(Health, detail)``, a bool or None."""
    if value is None or value is True:
        return Health.HEALTHY, ""
    if value is False:
        return Health.UNHEALTHY, "the check returned False"
    if isinstance(value, Health):
        return value, ""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Health):
        return value[0], one_line(str(value[1]))
    raise TypeError(f"a health check returns Health, (Health, detail), a bool or None, not {type(value).__name__}")


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line (control characters as spaces), at most ``limit`` characters."""
    flat = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- the probes' verdicts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """A probe's answer: passes or not, and each line of ``?verbose`` (Kubernetes style:
    ``[+]name ok``, ``[-]name failed: why``)."""

    probe: str
    passes: bool
    lines: tuple[str, ...]
    results: tuple[CheckResult, ...] = ()

    def text(self, verbose: bool) -> str:
        last = f"{self.probe} check {'passed' if self.passes else 'failed'}"
        return "\n".join([*self.lines, last, ""]) if verbose else ("ok\n" if self.passes else last + "\n")


def checks(host: Host, tag: str | None = None) -> Iterator[HealthCheck]:
    """Every check the host's services declared (``Service.health_check``), those tagged ``tag``."""
    for service in host.services:
        for check in getattr(service, "health_checks", ()):
            if tag is None or tag in check.tags:
                yield check


def readiness(host: Host, exclude: Sequence[str] = ()) -> Verdict:
    state = host.state
    lines = [f"[+]state ok ({state.value})" if state is READY_STATE else f"[-]state failed: {state.value}"]
    passes, results = _run_checks(host, "ready", exclude, lines)
    return Verdict("readyz", state is READY_STATE and passes, tuple(lines), results)


def liveness(host: Host, exclude: Sequence[str] = ()) -> Verdict:
    lines: list[str] = []
    hung = host.hung()
    if hung:
        now = time.monotonic()
        for beat in hung:
            busy = now - (beat.busy_since or now)
            lines.append(f"[-]heartbeat failed: {beat.component}/{beat.worker} busy {busy:.0f}s in {beat.current or '?'}")
    else:
        lines.append("[+]heartbeats ok")
    failed = host.state is HostState.FAILED or (not hung and not host.healthy())  # healthy(): no failure, no hang
    lines.append(f"[-]host failed ({host.state.value})" if failed else "[+]host ok")
    passes, results = _run_checks(host, "live", exclude, lines)
    return Verdict("livez", not hung and not failed and passes, tuple(lines), results)


def _run_checks(host: Host, tag: str, exclude: Sequence[str], lines: list[str]) -> tuple[bool, tuple[CheckResult, ...]]:
    passes = True
    results = []
    for check in checks(host, tag):
        if check.name in exclude:
            lines.append(f"[+]{check.name} excluded: ok")
            continue
        result = check.result()
        results.append(result)
        mark = "+" if result.health.passes else "-"
        word = {Health.HEALTHY: "ok", Health.DEGRADED: "degraded", Health.UNHEALTHY: "failed"}[result.health]
        lines.append(f"[{mark}]{check.name} {word}" + (f": {result.detail}" if result.detail else ""))
        passes = passes and result.health.passes
    return passes, tuple(results)
