"""Worker models a service composes with ``Service.use``. Each is a Component: bounded intake
(backpressure), error isolation, graceful drain to a deadline, live counters and heartbeats.

``from servicehost.workers import ThreadPool`` (or from ``servicehost``, or from the model's own
module) works for every model; each is imported on first use, by name (``WORKER_MODELS``), so that
``import servicehost`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

WORKER_MODELS = {
    "ThreadPool": "servicehost.workers.thread_pool:ThreadPool",
    "Pipeline": "servicehost.workers.pipeline:Pipeline",
    "Dispatcher": "servicehost.workers.dispatcher:Dispatcher",
    "PeriodicTimer": "servicehost.workers.timers:PeriodicTimer",
    "EventServer": "servicehost.workers.event_server:EventServer",
    "ProcessPool": "servicehost.workers.process_pool:ProcessPool",
    "ClosableQueue": "servicehost.workers.queues:ClosableQueue",
}
#: What the models are used with, importable from here as well.
_HELPERS = {
    "Stage": "servicehost.workers.pipeline:Stage",
    "Result": "servicehost.workers._tasks:Result",
    "Counters": "servicehost.workers._supervision:Counters",
    "Unfinished": "servicehost.workers._supervision:Unfinished",
}

__all__ = sorted({*WORKER_MODELS, *_HELPERS})


def __getattr__(name: str) -> Any:
    target = WORKER_MODELS.get(name) or _HELPERS.get(name)
    if target is None:
        raise AttributeError(f"module 'servicehost.workers' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
