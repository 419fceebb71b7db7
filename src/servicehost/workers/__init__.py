"""Worker models a service composes with ``Service.use``. Each is a Component: bounded intake
(backpressure), error isolation, graceful drain to a deadline, live counters and heartbeats.

``from servicehost.workers import ThreadPool`` (or from ``servicehost``, or from the model's own
module) works for every model; each is imported on first use, by name (``WORKER_MODELS``), so that
``import servicehost`` stays cheap.
"""

from __future__ import annotations

from .._lazy import lazy_names

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
    "Counters": "servicehost.components:Counters",
    "Unfinished": "servicehost.components:Unfinished",
}

__all__ = sorted({*WORKER_MODELS, *_HELPERS})

__getattr__, __dir__ = lazy_names(__name__, {
    name: spec.partition(":")[0] for name, spec in {**WORKER_MODELS, **_HELPERS}.items()})
