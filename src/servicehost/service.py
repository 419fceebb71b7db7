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

Settings: ``class Poller(Service[PollSettings])`` types ``self.settings`` as ``PollSettings`` (so a
type checker catches ``self.settings.intervl``) and is enough for the host to load them; the
older ``Settings = PollSettings`` class attribute works too, alone or beside it. A bare
``Service`` is ``Service[Any]``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, get_args, get_origin

from .stopping import Deadline, StopToken
from .components import Component

C = TypeVar("C", bound=Component)
if TYPE_CHECKING:  # a default (PEP 696), so a bare ``Service`` stays valid under mypy --strict
    from typing_extensions import TypeVar as DefaultTypeVar

    from .ops.health import HealthCheck

    S = DefaultTypeVar("S", default=Any)
else:  # at run time the default changes nothing (and typing_extensions is not a dependency)
    S = TypeVar("S")


class Service(Generic[S]):
    """Base class of user services. See the module docstring for the order of hooks.

    ``S``: the service's settings class (``Service[PollSettings]``); ``self.settings`` has that type.
    """

    #: The service's name (default: the class name). Used in logs and by managers.
    name: str = ""
    #: One-line description shown by service managers.
    description: ClassVar[str] = ""
    #: A frozen dataclass of the service's own settings (see ``servicehost.config.setting``);
    #: set from ``Service[X]`` when the class does not name it.
    Settings: ClassVar[type[Any] | None] = None
    #: False: the service calls ``self.ready()`` itself; the host waits for it.
    ready_on_start: ClassVar[bool] = True

    #: What this class gives ``Service`` for ``S``: a class, or a type variable of its own (a
    #: generic base such as ``class Base(Service[T])``), or None when it says nothing.
    _settings_parameter: ClassVar[object] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``class Poller(Service[PollSettings])`` (or ``Base[PollSettings]`` of a generic
        ``class Base(Service[T])``) without ``Settings = ...`` gets ``Settings = PollSettings``;
        naming a class there that is not ``PollSettings`` (or a subclass) is a TypeError where the
        class is defined."""
        super().__init_subclass__(**kwargs)
        if "__orig_bases__" not in cls.__dict__:
            return  # no parameter given here: Settings is inherited as it is
        for base in cls.__dict__["__orig_bases__"]:
            origin, args = get_origin(base), get_args(base)
            if origin is Service:
                cls._settings_parameter = args[0]
            elif isinstance(origin, type) and issubclass(origin, Service):
                given = origin._settings_parameter
                params = getattr(origin, "__parameters__", ())
                cls._settings_parameter = args[params.index(given)] if given in params else given
        declared = cls._settings_parameter
        if not isinstance(declared, type) or declared is type(None):
            return  # Service[None], Service[Any], a type variable, or nothing said
        named = cls.__dict__.get("Settings")
        if named is None:
            cls.Settings = declared
        elif not (isinstance(named, type) and issubclass(named, declared)):
            raise TypeError(f"{cls.__qualname__}: Settings = {getattr(named, '__qualname__', named)!s} "
                            f"but the class is Service[{declared.__qualname__}]; keep one of them")

    def __init__(self, settings: S | None = None) -> None:
        self.name = self.name or type(self).__name__
        if settings is None and self.Settings is not None:
            settings = self.Settings()
        #: The service's own settings, loaded and checked by the host (None without a Settings class).
        self.settings: S = settings  # type: ignore[assignment]  # None only when there is no Settings
        self.log = logging.getLogger(f"servicehost.service.{self.name}")
        self.components: list[Component] = []
        #: Where the service keeps its state (the host sets it from ``state_dir`` before start).
        self.state_dir: Path = Path.cwd()
        #: Start arguments from the manager (``servicehost start --arg X``, ``sc start NAME X``).
        self.start_args: tuple[str, ...] = ()
        self._ready = threading.Event()
        self._on_ready: Callable[[], None] = lambda: None
        #: The checks declared with :meth:`health_check` (``ops/health.py`` runs them for the probes).
        self.health_checks: list[HealthCheck] = []

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

    def health_check(self, name: str, fn: Callable[[], object], *, timeout: float = 5.0, cache: float = 5.0,
                     tags: Iterable[str] = ("ready",)) -> HealthCheck:
        """Declare a health check (``ops/health.py``), e.g. in ``start()``: ``fn()`` returns a
        ``servicehost.Health`` (HEALTHY, DEGRADED: both pass; UNHEALTHY fails), or ``(Health,
        "detail")``, a bool or None (healthy); raising is UNHEALTHY. A probe waits for it at most
        ``timeout`` seconds and reuses its result for ``cache`` seconds. ``tags``: ``ready`` gates
        ``/readyz`` (out of rotation while it fails), ``live`` gates ``/livez`` (restart me: only for
        what a restart fixes, never a dependency)."""
        from .ops.health import HealthCheck

        check = HealthCheck(name, fn, timeout=timeout, cache=cache, tags=tags)
        if any(c.name == name for c in self.health_checks):
            raise ValueError(f"{self.name}: a health check named {name!r} exists already")
        self.health_checks.append(check)
        return check

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
