"""servicehost — write a multithreaded background service once; run it in the foreground, under
the Windows Service Control Manager, systemd or supervisord.

Layout (who may import whom: arrows point one way, down this list):
    service.py     Service: what users write (start, run(stop), stop(deadline), pause, resume, reload, control)
    host.py        Host: start services in order, stop in reverse before the deadline, collect errors
    lifecycle.py   HostState + the one transition table
    stopping.py    StopToken, Deadline: the only cancellation primitive
    config.py      settings declared once (frozen dataclasses) → TOML keys, SERVICEHOST_* vars, flags
    errors.py      exceptions and ExitCode
    logs.py        logging setup; every log message a named event with a stable id
    components.py  the component contract: Component, Counters, Beat, Unfinished, HandBack
    workers/       ThreadPool, Pipeline, Dispatcher, PeriodicTimer, EventServer, ProcessPool, ClosableQueue
                   (each implements the contract); shared plumbing in _supervision.py and _tasks.py
    platforms/     the registry (__init__), the contracts (base.py, entry.py), foreground, control,
                   supervisord/, systemd/, windows/ (each a package split by side)
    compat/        pywin32-shaped modules for porting pywin32 services
    ops/           the operations view: the status document, health checks, and the optional HTTP
                   listener (probes, metrics, the status page), imported only when it is on
    intake/        Intake, the durable intake component, and the Store protocol (SQLite embedded; open_store)
    arguments.py   the parser class, argument types, Command, Invocation
    manage.py      the manager commands (install, start, status, ...), on the Manager contract
    cli.py         run/debug/settings + the one COMMANDS table; the only code that exits
    _startgc.py    the collector's settings during a start; _startcache.py: the start cache (a Windows
                   service's modules read from one file; platforms/windows/boot.py uses it)
The host never imports a platform; no platform imports the CLI; only platforms/windows/ imports win32*.
Names below are imported on first use, so ``import servicehost`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names

__all__ = [
    "ClosableQueue", "ConfigError", "Counters", "Deadline", "Dispatcher", "EventServer", "ExitCode",
    "Health", "Host", "HostConfig", "HostState", "Intake", "PeriodicTimer", "Pipeline", "ProcessPool", "QueueClosed",
    "QueueFull", "Result", "Service", "ServiceHostError", "Stage", "StartupError", "StopToken", "ThreadPool",
    "Unfinished", "main", "setting",
]

_WHERE = {
    "Service": "service", "Host": "host", "HostState": "lifecycle", "StopToken": "stopping",
    "Deadline": "stopping", "HostConfig": "config", "setting": "config", "ExitCode": "errors",
    "ServiceHostError": "errors", "ConfigError": "errors", "StartupError": "errors",
    "QueueClosed": "errors", "QueueFull": "errors", "main": "cli",
    "ThreadPool": "workers.thread_pool", "Result": "workers.thread_pool",
    "Pipeline": "workers.pipeline", "Stage": "workers.pipeline", "Dispatcher": "workers.dispatcher",
    "PeriodicTimer": "workers.timers", "EventServer": "workers.event_server",
    "ProcessPool": "workers.process_pool", "ClosableQueue": "workers.queues",
    "Counters": "components", "Unfinished": "components", "Intake": "intake.component",
    "Health": "ops.health",
}


__getattr__, _dir = lazy_names(__name__, {name: f".{module}" for name, module in _WHERE.items()})


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .cli import main
    from .config import HostConfig, setting
    from .errors import ConfigError, ExitCode, QueueClosed, QueueFull, ServiceHostError, StartupError
    from .host import Host
    from .intake.component import Intake
    from .lifecycle import HostState
    from .ops.health import Health
    from .service import Service
    from .stopping import Deadline, StopToken
    from .components import Counters, Unfinished
    from .workers.dispatcher import Dispatcher
    from .workers.event_server import EventServer
    from .workers.pipeline import Pipeline, Stage
    from .workers.process_pool import ProcessPool
    from .workers.queues import ClosableQueue
    from .workers.thread_pool import Result, ThreadPool
    from .workers.timers import PeriodicTimer
