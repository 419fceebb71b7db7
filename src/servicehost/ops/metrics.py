"""Prometheus metrics of a running service: :func:`render` writes the text exposition format
0.0.4 (``CONTENT_TYPE``) that the HTTP listener serves at ``/metrics`` (``ops/http.py``).

Every name starts ``servicehost_``; times are in seconds, timestamps in seconds since the epoch.
Labels come only from names the user gave — ``component`` (a worker model's ``name``), ``stage``
(a pipeline's stages), ``timer``, ``check`` (a health check) — plus a few fixed sets of values
(``state``, ``outcome``, ``level``, ``status``); never from task arguments or error texts, so the
number of series is fixed by the service's code. Every series exists from 0 at start.

    family                                         type       labels
    servicehost_info                               gauge      service, version, servicehost, python
    servicehost_state                              gauge      state (1 for the host's state, else 0)
    servicehost_start_time_seconds                 gauge
    servicehost_workers, _workers_busy             gauge      component [, stage]
    servicehost_queue_depth, _queue_capacity       gauge      component [, stage]
    servicehost_tasks_submitted_total              counter    component [, stage]
    servicehost_tasks_total                        counter    component [, stage], outcome (completed, failed)
    servicehost_tasks_rejected_total               counter    component [, stage]
    servicehost_busy_seconds_total                 counter    component [, stage]   utilisation: rate / workers
    servicehost_task_duration_seconds              histogram  component [, stage]   sampled (see below)
    servicehost_queue_wait_seconds                 histogram  component [, stage]   sampled; pools with a queue
    servicehost_worker_restarts_total              counter    component
    servicehost_timer_runs_total                   counter    timer, outcome (ok, failed)
    servicehost_timer_overruns_total               counter    timer   (ticks skipped: the previous run was busy)
    servicehost_timer_last_success_timestamp_seconds gauge    timer   (0: no run returned yet)
    servicehost_timer_duration_seconds             histogram  timer
    servicehost_intake_ready_jobs                  gauge      component   (a durable intake: ready in its store, every node's)
    servicehost_intake_dead_jobs                   gauge      component   (its store's dead-letter table)
    servicehost_intake_retries_total               counter    component   (failed attempts put back, from this process)
    servicehost_intake_rescues_total               counter    component   (jobs taken back from a lapsed lease)
    servicehost_intake_commit_operations           gauge      component   (operations per store commit, mean)
    servicehost_intake_wait_seconds                gauge      component, quantile (0.5, 0.99: submit to first start)
    servicehost_log_messages_total                 counter    level (debug, info, warning, error, critical)
    servicehost_health_check_status                gauge      check, status (1 for its last result, else 0)

A pipeline's series are per stage (``component`` is the pipeline, ``stage`` the stage): sum over
``stage`` for its workers, busy workers, queue and busy time. An EventServer's are its pool's.
Run times and queue waits are *sampled* where the pools already sample (one task in
``LATENCY_SAMPLE_EVERY``, about one in ``WAIT_SAMPLE_EVERY`` for the wait): a histogram's ``_count`` counts
samples, not tasks (``tasks_total`` counts tasks), and its quantiles and mean are the samples'.
Buckets reach 15 minutes; the default set is :data:`DEFAULT_BUCKETS`, and :func:`buckets` gives
a component its own, any of the grid ``components.TIME_BUCKETS``.

A process pool's children need no files of their own (no ``PROMETHEUS_MULTIPROC_DIR``): every
outcome comes back to the parent through the result pipe, and the parent counts it.

A scrape reads what the status reads (each component's counters and measures, summed over its
workers) and runs a health check only when its cached result is stale (each within its own
timeout); nothing on the workers' path waits for it. The exposition is hand-written (small, and
the tests parse every scrape with ``prometheus_client``'s parser).
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .. import logs
from ..components import TIME_BUCKETS, Component, Counters, Histogram, Measures
from ..lifecycle import HostState
from ..workers._supervision import without_quantiles
from .status import service_version, servicehost_version

if TYPE_CHECKING:
    from ..host import Host

#: The Content-Type of :func:`render`'s body.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The buckets shown by default (seconds, each on ``components.TIME_BUCKETS``): 1 ms to 15 min.
DEFAULT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

_LEVELS = ((logs.DEBUG, "debug"), (logs.INFO, "info"), (logs.WARNING, "warning"), (logs.ERROR, "error"),
           (logs.CRITICAL, "critical"))
_HEALTH = ("healthy", "degraded", "unhealthy")


def buckets(component: Component, bounds: Iterable[float]) -> Component:
    """Give ``component`` its own histogram buckets (seconds; each one of
    ``components.TIME_BUCKETS``, 100 µs to 15 min). Returns the component, so that
    ``self.pool = self.use(metrics.buckets(ThreadPool(...), (1, 10, 60, 300, 900)))`` reads well.
    Raises ValueError naming the allowed values for one off the grid."""
    chosen = tuple(sorted({float(b) for b in bounds}))
    off = [b for b in chosen if b not in TIME_BUCKETS]
    if not chosen or off:
        raise ValueError(f"{getattr(component, 'name', component)}: histogram buckets are seconds among "
                         f"{', '.join(f'{b:g}' for b in TIME_BUCKETS)}; got {', '.join(f'{b:g}' for b in off) or 'none'}")
    component.metric_buckets = chosen  # type: ignore[attr-defined]
    return component


def render(host: Host) -> bytes:
    """The metrics of ``host`` in the Prometheus text format 0.0.4 (``CONTENT_TYPE``)."""
    out = _Exposition(_memo(host))
    _host_families(out, host)
    _component_families(out, host)
    _log_families(out)
    _health_families(out, host)
    return out.text().encode("utf-8")


# -- the families ----------------------------------------------------------------------------------
def _host_families(out: _Exposition, host: Host) -> None:
    info = out.family("servicehost_info", "gauge",
                      "Which service runs here, at which version, on which servicehost and Python (always 1).")
    info.add((("service", host.name), ("version", service_version(host) or ""),
              ("servicehost", servicehost_version()), ("python", "{}.{}.{}".format(*sys.version_info[:3]))), 1)
    state = host.state
    family = out.family("servicehost_state", "gauge", "The host's state: 1 for the one it is in, 0 for the others.")
    for each in HostState:
        family.add((("state", each.value),), 1 if each is state else 0)
    out.family("servicehost_start_time_seconds", "gauge",
               "When the host began starting, in seconds since the epoch (0: not started).").add((), out.memo.start_time(host))


class _Components:
    """The per-component families, filled component by component (each family keeps its samples
    together, as the format requires)."""

    def __init__(self, out: _Exposition) -> None:
        f = out.family
        self.workers = f("servicehost_workers", "gauge", "Workers (threads or processes) serving the component.")
        self.busy = f("servicehost_workers_busy", "gauge", "Workers running a task now.")
        self.depth = f("servicehost_queue_depth", "gauge", "Tasks accepted and not started.")
        self.capacity = f("servicehost_queue_capacity", "gauge",
                          "Hand-offs the queue holds before producers block (a bulk chunk counts once).")
        self.submitted = f("servicehost_tasks_submitted_total", "counter", "Tasks accepted (a chunk counts its tasks).")
        self.tasks = f("servicehost_tasks_total", "counter", "Tasks finished, by outcome: completed (returned) or failed (raised).")
        self.rejected = f("servicehost_tasks_rejected_total", "counter",
                          "Tasks refused: the queue was closed, or full past the caller's timeout.")
        self.busy_seconds = f("servicehost_busy_seconds_total", "counter",
                              "Seconds workers spent running tasks (running ones included); utilisation = rate / workers.")
        self.duration = f("servicehost_task_duration_seconds", "histogram",
                          "Run time of sampled tasks (one in 64; _count counts samples, not tasks).")
        self.wait = f("servicehost_queue_wait_seconds", "histogram",
                      "Time sampled hand-offs waited in the queue before a worker took them (about one task in 64).")
        self.restarts = f("servicehost_worker_restarts_total", "counter",
                          "Workers replaced: a process pool's child that died or reached max_tasks_per_child.")
        self.timer_runs = f("servicehost_timer_runs_total", "counter", "Timer runs, by outcome: ok (returned) or failed (raised).")
        self.timer_overruns = f("servicehost_timer_overruns_total", "counter",
                                "Ticks not run because the previous run was still busy (or the timer woke late).")
        self.timer_success = f("servicehost_timer_last_success_timestamp_seconds", "gauge",
                               "When the last run that returned began, in seconds since the epoch (0: none yet).")
        self.timer_duration = f("servicehost_timer_duration_seconds", "histogram", "Run time of sampled timer runs.")
        self.intake_ready = f("servicehost_intake_ready_jobs", "gauge",
                              "A durable intake's jobs ready in its store (every node's backlog, not only this process's).")
        self.intake_dead = f("servicehost_intake_dead_jobs", "gauge", "Jobs in a durable intake's dead-letter table.")
        self.intake_retries = f("servicehost_intake_retries_total", "counter",
                                "Failed attempts this process put back for a retry after a backoff.")
        self.intake_rescues = f("servicehost_intake_rescues_total", "counter",
                                "Jobs this process's store took back from a lease that ran out (a node that died, a hung handler).")
        self.intake_batch = f("servicehost_intake_commit_operations", "gauge",
                              "Operations per store commit, on average (group commit: submits, acks, renewals, claims).")
        self.intake_wait = f("servicehost_intake_wait_seconds", "gauge",
                             "Seconds sampled jobs waited from their submit to their first start, by quantile.")

    def add(self, out: _Exposition, component: Any, name: str, counters: Counters, measures: Measures | None) -> None:
        bounds = _bounds(component)
        if _is_timer(counters):
            key = (("timer", name),)
            self.timer_runs.add(key + (("outcome", "ok"),), counters.completed)
            self.timer_runs.add(key + (("outcome", "failed"),), counters.failed)
            self.timer_overruns.add(key, counters.skipped)  # type: ignore[attr-defined]
            self.timer_success.add(key, counters.last_success or 0)  # type: ignore[attr-defined]
            self.timer_duration.histogram(key, measures.task_duration if measures else Histogram(), bounds)
            return
        stages = getattr(component, "stage_counters", None)
        if measures is not None and measures.stages and callable(stages):
            for stage in stages():
                stage_name = stage.name.rpartition("/")[2]
                self._one(out, (("component", name), ("stage", stage_name)), stage,
                          measures.stages.get(stage_name), bounds)
        else:
            self._one(out, (("component", name),), counters, measures, bounds)
        self.restarts.add((("component", name),), measures.restarts if measures else 0)
        if counters.depth is not None:  # a durable intake (intake/component.py)
            self._intake((("component", name),), counters)

    def _intake(self, key: tuple[tuple[str, str], ...], c: Counters) -> None:
        self.intake_ready.add(key, c.depth or 0)
        self.intake_dead.add(key, c.dead_letters or 0)
        self.intake_retries.add(key, c.retries or 0)
        self.intake_rescues.add(key, c.rescues or 0)
        self.intake_batch.add(key, c.commit_batch or 0)
        for quantile, value in (("0.5", c.wait_p50), ("0.99", c.wait_p99)):
            self.intake_wait.add(key + (("quantile", quantile),), value if value is not None else math.nan)

    def _one(self, out: _Exposition, key: tuple[tuple[str, str], ...], c: Counters, m: Measures | None,
             bounds: Sequence[float]) -> None:
        self.workers.add(key, c.workers or 0)
        self.busy.add(key, c.in_flight)
        self.depth.add(key, c.queue_depth)
        self.capacity.add(key, c.queue_capacity or 0)
        self.submitted.add(key, c.submitted)
        self.tasks.add(key + (("outcome", "completed"),), c.completed)
        self.tasks.add(key + (("outcome", "failed"),), c.failed)
        self.rejected.add(key, m.rejected if m else 0)
        self.busy_seconds.add(key, out.memo.never_less(key, m.busy_seconds if m else 0.0))
        self.duration.histogram(key, m.task_duration if m else Histogram(), bounds)
        if m is not None and m.queue_wait is not None:
            self.wait.histogram(key, m.queue_wait, bounds)


def _component_families(out: _Exposition, host: Host) -> None:
    families = _Components(out)
    seen: dict[str, int] = {}
    for service in host.services:
        for component in service.components:
            name = str(getattr(component, "name", "") or type(component).__name__)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:  # two components of one name: the later ones numbered, never merged
                name = f"{name}#{seen[name]}"
            measured = getattr(component, "measures", None)
            with without_quantiles():  # a pipeline's stage counters are read inside add
                families.add(out, component, name, component.counters(), measured() if callable(measured) else None)


def _log_families(out: _Exposition) -> None:
    family = out.family("servicehost_log_messages_total", "counter",
                        "Log records written, by level (from the configured log level up).")
    counts = logs.MESSAGES
    for level, label in _LEVELS:
        family.add((("level", label),), counts.get(level, 0))


def _health_families(out: _Exposition, host: Host) -> None:
    family = out.family("servicehost_health_check_status", "gauge",
                        "Each health check's last result: 1 for its status, 0 for the others.")
    for service in host.services:
        for check in getattr(service, "health_checks", ()):
            status = getattr(getattr(check.result(), "health", None), "value", None)
            for each in _HEALTH:
                family.add((("check", str(check.name)), ("status", each)), 1 if status == each else 0)


def _is_timer(counters: Counters) -> bool:
    return hasattr(counters, "skipped") and hasattr(counters, "last_success")


def _bounds(component: object) -> Sequence[float]:
    return getattr(component, "metric_buckets", None) or DEFAULT_BUCKETS


# -- the text format -------------------------------------------------------------------------------
Labels = tuple[tuple[str, str], ...]


class _Family:
    """One family's HELP and TYPE lines, then its samples. A series' labels are escaped once per
    scrape (``_labels``) and reused for every line of it (a histogram has 16)."""

    __slots__ = ("name", "lines")

    def __init__(self, name: str, kind: str, help: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {_escape_help(help)}", f"# TYPE {name} {kind}"]

    def add(self, labels: Labels, value: float) -> None:
        body = _labels(labels)
        self.lines.append(f"{self.name}{{{body}}} {_number(value)}" if body else f"{self.name} {_number(value)}")

    def histogram(self, labels: Labels, histogram: Histogram, bounds: Sequence[float]) -> None:
        """Cumulative ``_bucket`` lines at ``bounds`` (on the grid), ``+Inf``, ``_sum``, ``_count``."""
        body = _labels(labels)
        bucket = f"{self.name}_bucket{{{body},le=" if body else f"{self.name}_bucket{{le="
        counts = histogram.counts
        lines = self.lines
        cumulative = grid = 0
        last = len(TIME_BUCKETS)
        for bound in bounds:
            while grid < last and TIME_BUCKETS[grid] <= bound:
                cumulative += counts[grid]
                grid += 1
            lines.append(f'{bucket}"{_le(bound)}"}} {cumulative}')
        total = sum(counts)
        lines.append(f'{bucket}"+Inf"}} {total}')
        tail = f"{{{body}}}" if body else ""
        lines.append(f"{self.name}_sum{tail} {_number(histogram.total)}")
        lines.append(f"{self.name}_count{tail} {total}")


class _Exposition:
    def __init__(self, memo: _Memo) -> None:
        self.memo = memo
        self.families: list[_Family] = []

    def family(self, name: str, kind: str, help: str) -> _Family:
        family = _Family(name, kind, help)
        self.families.append(family)
        return family

    def text(self) -> str:
        return "\n".join(line for f in self.families for line in f.lines) + "\n"


@functools.lru_cache(maxsize=4096)
def _labels(labels: Labels) -> str:
    """The escaped label pairs of a series (cached: a scrape writes the same ones in every family)."""
    return ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels)


def _escape_value(value: str) -> str:
    """A label value as the format wants it: backslash, double quote and newline escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


@functools.cache
def _le(bound: float) -> str:
    """A bucket's bound as Prometheus' own clients write it (``0.005``, ``1.0``, ``900.0``)."""
    return repr(float(bound))


def _number(value: float) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# -- what a scrape remembers between scrapes ---------------------------------------------------------
class _Memo:
    """Per host: the start time (made once), and the last busy time of each series — the sum over
    workers is read without stopping them, and a task ending while it is read may be counted once
    as running and once as done; a counter never goes back, so the next scrape never shows less."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[Labels, float] = {}
        self._start: float | None = None

    def never_less(self, key: Labels, value: float) -> float:
        with self._lock:
            last = self._last.get(key, 0.0)
            if value < last:
                return last
            self._last[key] = value
            return value

    def start_time(self, host: Host) -> float:
        if self._start is None:
            started = getattr(host, "_started_at", 0.0)  # monotonic, set by Host.start
            if not started:
                return 0
            self._start = time.time() - (time.monotonic() - started)
        return self._start


_MEMOS: weakref.WeakKeyDictionary[Any, _Memo] = weakref.WeakKeyDictionary()
_MEMOS_LOCK = threading.Lock()


def _memo(host: Host) -> _Memo:
    with _MEMOS_LOCK:
        memo = _MEMOS.get(host)
        if memo is None:
            memo = _MEMOS[host] = _Memo()
        return memo
