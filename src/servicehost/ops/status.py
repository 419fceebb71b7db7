"""The status document of a running service: one model, read from the host, carried by every
platform (the control channel's ``status``; its summary is systemd's ``STATUS=`` line) and
rendered by ``servicehost status`` (``platforms/base.py``: ``ServiceStatus``).

    key            value
    pid, name      this process, the host's (first service's) name
    state          the host's state (``lifecycle.py``), ``ready`` whether it counts as ready
    state_since    when it entered that state (``time.time()``)
    uptime         seconds since the control channel began serving (the run's start)
    healthy        no worker hung, no failure
    status_line    one line: the state, then per component done, failed, busy/size, queued/capacity
    counters       per component: :class:`~servicehost.components.Counters` as a JSON object
    last_error     the latest task failure over every component: {component, error, at}, or null
    version        the service's ``version`` attribute (null when it has none)
    servicehost    servicehost's version; ``python`` the interpreter's

Keys are only ever added. Reading it costs what reading the counters costs: a sum over each
component's workers, nothing on the workers' own path.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..components import Counters
from ..host import Host
from ..lifecycle import READY_STATES


def service_status(host: Host, *, uptime: float | None = None) -> dict[str, Any]:
    """The status document of ``host`` (see the module docstring), JSON-ready."""
    state, since = host.lifecycle.snapshot()
    counters = host.counters()
    return {
        "pid": os.getpid(),
        "name": host.name,
        "state": state.value,
        "ready": state in READY_STATES,
        "state_since": since,
        "uptime": uptime,
        "healthy": host.healthy(),
        "status_line": host.status_line(counters, state),
        "counters": [dataclasses.asdict(c) for c in counters],
        "last_error": last_error(counters),
        "version": service_version(host),
        "servicehost": servicehost_version(),
        "python": "{}.{}.{}".format(*sys.version_info[:3]),
    }


def last_error(counters: Sequence[Counters]) -> dict[str, Any] | None:
    """The latest failure any component recorded: ``{"component", "error", "at"}``, or None."""
    latest = max((c for c in counters if c.last_error_at is not None),
                 key=lambda c: c.last_error_at or 0.0, default=None)
    if latest is None:
        return None
    return {"component": latest.name, "error": latest.last_error, "at": latest.last_error_at}


def service_version(host: Host) -> str | None:
    """The first ``version`` a service of ``host`` declares (a class attribute), else None."""
    for service in host.services:
        version = getattr(service, "version", None)
        if version:
            return str(version)
    return None


@functools.cache
def servicehost_version() -> str:
    """servicehost's own version, as installed (``unknown`` when run from a bare source tree)."""
    from importlib import metadata

    try:
        return metadata.version("servicehost")
    except metadata.PackageNotFoundError:
        return "unknown"
