"""Service: what users write.

Subclass it and override the hooks you need. The host calls them in this order:

1. ``start()`` — on the host thread, in service order. Open resources, start intake. Raise to
   fail the start (exit code 3). Components given to ``use()`` are started already.
2. ``run(stop)`` — only if you override it: on a thread of its own, until ``stop`` is requested.
   Returning early (without a stop) stops the host cleanly, as ``SvcDoRun`` returning does.
   An exception here fails the host (exit code 1) so the manager restarts it.
3. ``stop(deadline)`` — on the host's stopper thread, in reverse service order, after a stop was
   requested. Stop intake at the source; in-flight work in your components is drained by the
   host afterwards (close → drain → report), until ``deadline``.

``pause()``/``resume()``/``reload()``/``control(code)`` run on the thread that asked (a platform
thread), one at a time. Readiness: a service is ready when ``start()`` returns, unless it sets
``ready_on_start = False`` and calls ``self.ready()`` itself (from ``start`` or ``run``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .stopping import Deadline, StopToken
from .workers._supervision import Component

C = TypeVar("C", bound=Component)


class Service:
    """Base class of user services. See the module docstring for the order of hooks."""

    #: The service's name (default: the class name). Used in logs and by managers.
    name: str = ""
    #: One-line description shown by service managers.
    description: ClassVar[str] = ""
    #: A frozen dataclass of the service's own settings (see ``servicehost.config.setting``).
    Settings: ClassVar[type | None] = None
    #: False: the service calls ``self.ready()`` itself; the host waits for it.
    ready_on_start: ClassVar[bool] = True

    def __init__(self, settings: Any = None) -> None:
        self.name = self.name or type(self).__name__
        if settings is None and self.Settings is not None:
            settings = self.Settings()
        self.settings = settings
        self.log = logging.getLogger(f"servicehost.service.{self.name}")
        self.components: list[Component] = []
        #: Where the service keeps its state (the host sets it from ``state_dir`` before start).
        self.state_dir: Path = Path.cwd()
        #: Start arguments from the manager (``servicehost start --arg X``, ``sc start NAME X``).
        self.start_args: tuple[str, ...] = ()
        self._ready = threading.Event()
        self._on_ready: Callable[[], None] = lambda: None

    # -- composition ------------------------------------------------------------------------------
    def use(self, component: C) -> C:
        """Register a worker component and make it live: the host drains it on stop, pauses it on
        pause, watches its heartbeats and reports its counters. Returns it, for
        ``self.pool = self.use(...)``.

        One rule for every model: a component is live once ``use`` returns — its threads run, a
        server listens (``use`` calls the component's ``start()`` when it has one; starting an
        already started component does nothing). So when ``start()`` returns, "ready" is true,
        and a server that cannot bind fails the start (exit code 3)."""
        if not isinstance(component, Component):
            raise TypeError(f"{component!r} is not a servicehost component (close/drain/counters/beats)")
        start = getattr(component, "start", None)
        if callable(start):
            start()
        self.components.append(component)
        return component

    def ready(self) -> None:
        """Tell the host this service is ready (only needed when ``ready_on_start`` is False)."""
        self._ready.set()
        self._on_ready()

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    # -- hooks --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open resources and start intake. Must return (long work belongs in ``run``)."""

    def run(self, stop: StopToken) -> None:
        """Optional main loop on its own thread: ``while not stop.wait(interval): ...``."""

    def stop(self, deadline: Deadline) -> None:
        """Stop intake at the source; finish what you can before ``deadline``."""

    def pause(self) -> None:
        """Stop taking new work until ``resume`` (components are paused for you)."""

    def resume(self) -> None:
        """Take new work again."""

    def reload(self) -> None:
        """Re-read what can change without a restart (SIGHUP, PARAMCHANGE, ``reload``)."""

    def control(self, code: int) -> None:
        """A custom control code (128–255, as on Windows) sent by an admin."""

    @classmethod
    def has_run(cls) -> bool:
        return cls.run is not Service.run
