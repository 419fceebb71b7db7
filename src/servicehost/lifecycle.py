"""HostState and the one table of allowed transitions.

    CREATED → STARTING → RUNNING ⇄ (PAUSING → PAUSED → RESUMING) → STOPPING → STOPPED
                            ⇅ drain / resume                          ↑
                         DRAINING ────────────────────────────────────┘
    and from every state but STOPPED and FAILED → FAILED (a failure, or a failed start)

Three ways a running host takes less work, each undone by ``resume`` except the last:

* **pause** (PAUSING → PAUSED): every worker finishes the task it runs, then takes no more;
  queued work waits, untouched, and producers keep queueing until the queues are full. The
  SCM's PAUSE; the services' ``pause()`` hooks run.
* **drain** (DRAINING): intake is *held*, not closed: a producer blocks in ``submit``/``put`` as
  if the queue were full (a ``run()`` blocked there just waits), timers skip their ticks
  (counted as paused), and the workers finish everything already queued and running. Once
  drained, nothing is queued or running; ``resume`` opens intake again and the blocked producers
  go on — nothing is lost. The service stays running for its manager (SCM: SERVICE_RUNNING).
* **stop** (STOPPING): intake is *closed* (producers get QueueClosed), work drains until the
  stop deadline, and what is left is handed back. There is no way back.

Every move records when it happened (:attr:`Lifecycle.since`, wall clock), so a status can say
"running since ...". An illegal move raises :class:`~servicehost.errors.IllegalTransition`.
Platforms subscribe to moves (``Lifecycle.subscribe``) to tell their manager: SERVICE_RUNNING /
READY=1 on RUNNING, etc.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

from .errors import IllegalTransition


class HostState(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
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
    S.RUNNING: frozenset({S.PAUSING, S.DRAINING, S.STOPPING, S.FAILED}),
    S.DRAINING: frozenset({S.RUNNING, S.STOPPING, S.FAILED}),  # RUNNING: resume
    S.PAUSING: frozenset({S.PAUSED, S.RUNNING, S.STOPPING, S.FAILED}),  # RUNNING: pause refused
    S.PAUSED: frozenset({S.RESUMING, S.STOPPING, S.FAILED}),
    S.RESUMING: frozenset({S.RUNNING, S.PAUSED, S.STOPPING, S.FAILED}),  # PAUSED: resume refused
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset(),
    S.FAILED: frozenset(),
}
#: The states in which the host counts as ready: it reached RUNNING (every service said it is
#: ready) and has not begun stopping. A paused or draining host is ready: it runs, taking less work.
READY_STATES: frozenset[HostState] = frozenset({S.RUNNING, S.DRAINING, S.PAUSING, S.PAUSED, S.RESUMING})
del S

Listener = Callable[[HostState, HostState], None]


class Lifecycle:
    """The host's current state; thread-safe; notifies listeners after each move."""

    def __init__(self) -> None:
        self._state = HostState.CREATED
        self._since = time.time()
        self._cond = threading.Condition()
        self._listeners: list[Listener] = []

    @property
    def state(self) -> HostState:
        return self._state

    @property
    def since(self) -> float:
        """When the host entered its current state (``time.time()``, for status screens)."""
        return self._since

    def snapshot(self) -> tuple[HostState, float]:
        """The state and when it began, read together (consistent)."""
        with self._cond:
            return self._state, self._since

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
            self._since = time.time()
            self._cond.notify_all()
        for listener in list(self._listeners):
            listener(old, new)
        return old

    def wait_for(self, states: set[HostState], timeout: float | None) -> bool:
        """Block until the state is one of ``states`` or ``timeout``; True if reached."""
        with self._cond:
            return self._cond.wait_for(lambda: self._state in states, timeout)
