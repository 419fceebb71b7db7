"""Worker models a service composes with ``Service.use``. Each is a Component: bounded intake
(backpressure), error isolation, graceful drain to a deadline, live counters and heartbeats.

Imported lazily by name (``WORKER_MODELS``) so that ``import servicehost`` stays cheap.
"""

WORKER_MODELS = {
    "ThreadPool": "servicehost.workers.thread_pool:ThreadPool",
    "Pipeline": "servicehost.workers.pipeline:Pipeline",
    "Dispatcher": "servicehost.workers.dispatcher:Dispatcher",
    "PeriodicTimer": "servicehost.workers.timers:PeriodicTimer",
    "EventServer": "servicehost.workers.event_server:EventServer",
    "ProcessPool": "servicehost.workers.process_pool:ProcessPool",
    "ClosableQueue": "servicehost.workers.queues:ClosableQueue",
}
