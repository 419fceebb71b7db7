"""The one screen ``servicehost status NAME`` prints, like ``systemctl status``: the same on every
manager, for a foreground run too (``ServiceStatus.lines`` calls :func:`screen`).

    name:      dropfolder
    manager:   systemd
    state:     running
    since:     2026-05-01 12:00:03 UTC (3min 2s ago)
    pid:       4242
    version:   1.4 (servicehost 0.1.0, Python 3.11.2)
    uptime:    182s
    ...                                      (restarts, last exit, account, start mode, status,
                                              health, the manager's own details)

    component  kind           busy  queue     done  failed  p50    p95
    files      ThreadPool     3/8   12/1024  10234       3  1.2ms  8ms
    summary    PeriodicTimer  0/1   0           61       0  310us  1.1ms
      summary: last run ok at 12:03:01 (4s ago), next at 12:03:02 (in 1s)

    last error: files at 12:02:58 (7s ago): PermissionError: [Errno 13] ...

Every header line is ``key: value`` (scripts parse them; ``--json`` is the stable form). A line
whose value is unknown is left out, except the first seven, which say ``unknown``; the component
table and the last error appear when the service answers on its control channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import printable

if TYPE_CHECKING:
    from .base import ServiceStatus


def screen(status: ServiceStatus, now: float) -> list[str]:
    """The lines of ``status``'s screen; times are shown against ``now`` (``time.time()``)."""
    from .base import exit_name

    def show(value: object) -> str:
        return "unknown" if value is None else str(value)

    lines = [f"name:      {status.name}", f"manager:   {status.manager}", f"state:     {status.state}"]
    if status.state_since is not None:
        lines.append(f"since:     {moment(status.state_since, now, date=True)}")
    lines.append(f"pid:       {show(status.pid)}")
    versions = _versions(status)
    if versions:
        lines.append(f"version:   {versions}")
    lines += [
        f"uptime:    {'unknown' if status.uptime is None else f'{status.uptime:.0f}s'}",
        f"restarts:  {show(status.restarts)}",
        f"last exit: {'unknown' if status.last_exit is None else exit_name(status.last_exit)}",
    ]
    health = None if status.healthy is None else ("ok" if status.healthy else "a worker is hung, or the service is failing")
    known = [("account", status.account), ("start mode", status.start_mode), ("status", status.status_line),
             ("health", health)]
    lines += [f"{k}: {v}" for k, v in known if v is not None]
    lines += [f"{k}: {v}" for k, v in status.detail.items()]
    if status.counters:
        lines += ["", *component_table(status.counters), *timer_lines(status.counters, now)]
    error = status.last_error or _latest_error(status.counters or ())
    if error:
        lines += ["", last_error_line(error, now)]
    return lines


def component_table(counters: Sequence[Mapping[str, object]]) -> list[str]:
    """One row per component: busy/size, queue depth/capacity, done, failed, p50, p95."""
    header = ["component", "kind", "busy", "queue", "done", "failed", "p50", "p95"]
    rows = [header]
    for c in counters:
        busy = _ratio(c.get("in_flight"), c.get("workers"))
        queue = _ratio(c.get("queue_depth"), c.get("queue_capacity"))
        rows.append([str(c.get("name", "?")), str(c.get("kind") or "-"), busy, queue,
                     _count(c.get("completed")), _count(c.get("failed")),
                     duration(c.get("latency_p50")), duration(c.get("latency_p95"))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {4, 5}  # numbers line up on the right
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]


def timer_lines(counters: Sequence[Mapping[str, object]], now: float) -> list[str]:
    """For each timer: how its last run ended and when, when the next one is due, ticks skipped."""
    out = []
    for c in counters:
        if "next_run" not in c and "last_result" not in c:
            continue
        last_run, next_run = c.get("last_run"), c.get("next_run")
        said = [f"last run {c.get('last_result')} at {moment(last_run, now)}"
                if isinstance(last_run, (int, float)) else "not run yet"]
        said.append(f"next at {moment(next_run, now)}" if isinstance(next_run, (int, float)) else "no next run")
        extra = [f"{c.get(k)} {k}" for k in ("skipped", "paused") if c.get(k)]
        out.append(f"  {c.get('name')}: {', '.join(said)}" + (f"; {', '.join(extra)}" if extra else ""))
    return out


def last_error_line(error: Mapping[str, object], now: float) -> str:
    at = error.get("at")
    when = f" at {moment(at, now)}" if isinstance(at, (int, float)) else ""
    # The error's text is the service's (a task's exception message): shown escaped, one line.
    return printable(f"last error: {error.get('component')}{when}: {error.get('error')}")


def _latest_error(counters: Sequence[Mapping[str, object]]) -> Mapping[str, object] | None:
    """The latest failure in the counters themselves (a service that sends no ``last_error``)."""
    failed = [c for c in counters if isinstance(c.get("last_error_at"), (int, float)) and c.get("last_error")]
    if not failed:
        return None
    latest = max(failed, key=lambda c: float(c["last_error_at"]))  # type: ignore[arg-type]
    return {"component": latest.get("name"), "error": latest.get("last_error"), "at": latest.get("last_error_at")}


def _versions(status: ServiceStatus) -> str:
    parts = [f"servicehost {status.servicehost_version}" if status.servicehost_version else "",
             f"Python {status.python}" if status.python else ""]
    rest = ", ".join(p for p in parts if p)
    if status.version:
        return f"{status.version} ({rest})" if rest else status.version
    return rest


def _ratio(part: object, whole: object) -> str:
    if not isinstance(part, int):
        return "-"
    return f"{part}/{whole}" if isinstance(whole, int) and whole else str(part)


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) else "-"


def duration(seconds: object) -> str:
    """A run time for a column: ``850us``, ``12.5ms``, ``3.20s``; ``-`` when unknown. ASCII only:
    a Windows console's code page may have no micro sign."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds:.2f}s"


def ago(seconds: float) -> str:
    """``42s``, ``3min 2s``, ``2h 5min``, ``3d 4h``."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}min {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}min"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def moment(when: float, now: float, *, date: bool = False) -> str:
    """``12:03:01 (4s ago)`` or ``... (in 2s)`` in local time; ``date``: with the day and zone."""
    local = datetime.fromtimestamp(when).astimezone()
    shown = local.strftime("%Y-%m-%d %H:%M:%S %Z" if date else "%H:%M:%S")
    delta = now - when
    return f"{shown} ({ago(delta)} ago)" if delta >= 0 else f"{shown} (in {ago(-delta)})"


__all__ = ["ago", "component_table", "duration", "last_error_line", "moment", "screen", "timer_lines"]
