"""HostState and the one table of allowed transitions.

    CREATED → STARTING → RUNNING ⇄ (PAUSING → PAUSED → RESUMING) → STOPPING → STOPPED
                   └──────────┴───────────┴─────────┴──────────────────────┴──→ FAILED

An illegal move raises :class:`~servicehost.errors.IllegalTransition`. Platforms subscribe to
moves (``Lifecycle.subscribe``) to tell their manager: SERVICE_RUNNING / READY=1 on RUNNING, etc.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable

from .errors import IllegalTransition


class HostState(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    RESUMING = "resuming"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (HostState.STOPPED, HostState.FAILED)


S = HostState
#: Every allowed move. STOPPING is reachable from any live state: a stop may come at any time.
TRANSITIONS: dict[HostState, frozenset[HostState]] = {
    S.CREATED: frozenset({S.STARTING, S.STOPPING}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.FAILED}),
    S.RUNNING: frozenset({S.PAUSING, S.STOPPING, S.FAILED}),
    S.PAUSING: frozenset({S.PAUSED, S.RUNNING, S.STOPPING, S.FAILED}),  # RUNNING: pause refused
    S.PAUSED: frozenset({S.RESUMING, S.STOPPING, S.FAILED}),
    S.RESUMING: frozenset({S.RUNNING, S.PAUSED, S.STOPPING, S.FAILED}),  # PAUSED: resume refused
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset(),
    S.FAILED: frozenset(),
}
del S

Listener = Callable[[HostState, HostState], None]


class Lifecycle:
    """The host's current state; thread-safe; notifies listeners after each move."""

    def __init__(self) -> None:
        self._state = HostState.CREATED
        self._cond = threading.Condition()
        self._listeners: list[Listener] = []

    @property
    def state(self) -> HostState:
        return self._state

    def subscribe(self, listener: Listener) -> None:
        """``listener(old, new)`` runs on the moving thread after every move."""
        self._listeners.append(listener)

    def move(self, new: HostState) -> HostState:
        """Move to ``new``; raise IllegalTransition if the table forbids it. Returns the old state."""
        with self._cond:
            old = self._state
            if new not in TRANSITIONS[old]:
                raise IllegalTransition(f"host cannot move from {old.name} to {new.name}")
            self._state = new
            self._cond.notify_all()
        for listener in list(self._listeners):
            listener(old, new)
        return old

    def wait_for(self, states: set[HostState], timeout: float | None) -> bool:
        """Block until the state is one of ``states`` or ``timeout``; True if reached."""
        with self._cond:
            return self._cond.wait_for(lambda: self._state in states, timeout)
