"""sd_notify: a service running under systemd tells it what it does, one AF_UNIX datagram per
message on ``$NOTIFY_SOCKET``. Pure Python; no libsystemd binding.

:class:`Notifier` sends the datagrams; :class:`NotifySession` follows the host and sends:

    host event                         what systemd is told (one datagram on $NOTIFY_SOCKET)
    run() begins                       STATUS=starting, then EXTEND_TIMEOUT_USEC every second while
                                       the start goes on (bounded by start_timeout)
    every service ready (RUNNING)      READY=1 + STATUS=<state; live counters>
    reload (SIGHUP, ``reload``)        RELOADING=1 + MONOTONIC_USEC, the services' reload(), READY=1
    paused, draining, resumed          STATUS=<state; live counters> (a drain is reported here only:
                                       the unit stays active, as the service still runs)
    stop requested (STOPPING)          STOPPING=1, then EXTEND_TIMEOUT_USEC every second until the
                                       stop deadline (a drain longer than TimeoutStopSec= survives)
    every second                       STATUS= when it changed (php-fpm style: the state, then per
                                       component done, failed, busy/size, queued/capacity);
                                       WATCHDOG=1 (when $WATCHDOG_USEC is set) only while ``host.healthy()``: a hung worker starves the
                                       watchdog, systemd kills the service and Restart= restarts it.
                                       (``install --watchdog`` also sets the host's hang policy, which
                                       usually acts first for a worker hung in Python: exit 5, then
                                       Restart=. systemd's kill is for a process that no longer runs
                                       at all, e.g. a worker holding the GIL in C code.)
    each log line on stderr            a journald priority prefix (``journal.py``)

The platform (``platform.py``) starts a session when ``$NOTIFY_SOCKET`` is set; without it (a
service started by hand) the host runs the same, telling no one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Self

from ... import logs
from ...host import Host
from ...lifecycle import HostState
from .unit import START_MARGIN, one_line

log = logging.getLogger("servicehost.platforms.systemd")

#: How often the session wakes to send WATCHDOG=1, STATUS= and EXTEND_TIMEOUT_USEC (seconds).
TICK = 1.0
#: Each EXTEND_TIMEOUT_USEC gives this much time; it is renewed every tick while work goes on,
#: so a wedged process still meets a timeout soon after it stops renewing.
EXTEND_WINDOW = 5.0
#: A datagram to systemd never blocks the host longer than this.
SEND_TIMEOUT = 2.0


class Notifier:
    """Sends sd_notify(3) messages: one datagram per message on the AF_UNIX socket systemd gave.

    Thread-safe. A failed send is logged at debug and reported as False (systemd may be gone, e.g.
    while it re-executes); it never raises into the host. The kernel attaches this process's
    credentials, which ``NotifyAccess=main`` checks: send from the main process only (any thread).
    """

    def __init__(self, address: str) -> None:
        if address.startswith("@"):
            self.address = "\0" + address[1:]  # abstract namespace
        elif address.startswith("/"):
            self.address = address
        else:
            raise ValueError(f"NOTIFY_SOCKET={address!r}: only AF_UNIX addresses are supported")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(SEND_TIMEOUT)
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_env(cls, env: MutableMapping[str, str], *, unset: bool = True) -> Notifier | None:
        """The notifier for ``$NOTIFY_SOCKET`` (None when unset). ``unset`` removes the variable,
        as ``sd_notify(unset_environment=1)`` does, so children (process pools) do not inherit it."""
        address = env.pop("NOTIFY_SOCKET", None) if unset else env.get("NOTIFY_SOCKET")
        if not address:
            return None
        try:
            return cls(address)
        except ValueError as exc:
            logs.systemd_notify_socket_unsupported(log, exc)
            return None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one message; True if it was sent."""
        for f in fields:
            if "\n" in f or "=" not in f:
                raise ValueError(f"sd_notify field {f!r}: expected KEY=VALUE on one line")
        data = "\n".join(fields).encode("utf-8", "replace")
        with self._lock:
            if self._closed:
                return False
            try:
                self._sock.sendto(data, self.address)
            except OSError as exc:
                logs.notify_failed(log, exc)
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._sock.close()


def watchdog_interval(env: MutableMapping[str, str], *, unset: bool = True, pid: int | None = None
                      ) -> float | None:
    """Seconds between WATCHDOG=1 messages (half of ``$WATCHDOG_USEC``), or None when the watchdog
    is off or meant for another process (``$WATCHDOG_PID``). ``unset`` removes both variables."""
    usec = env.pop("WATCHDOG_USEC", None) if unset else env.get("WATCHDOG_USEC")
    for_pid = env.pop("WATCHDOG_PID", None) if unset else env.get("WATCHDOG_PID")
    try:
        if not usec or int(usec) <= 0:
            return None
        if for_pid and int(for_pid) != (os.getpid() if pid is None else pid):
            return None
    except ValueError as exc:
        logs.systemd_watchdog_env_invalid(log, exc)
        return None
    return int(usec) / 2e6


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class NotifySession:
    """Tells systemd what ``host`` does (see the module docstring's table).

    ``start()`` subscribes to the host's lifecycle and starts one daemon thread (the tick loop);
    ``close()`` stops it. Lifecycle listeners run on the thread that moved the host and only send
    a datagram (never block longer than SEND_TIMEOUT, never raise into the host).
    """

    def __init__(self, host: Host, notifier: Notifier, *, watchdog: float | None = None,
                 tick: float = TICK, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.notifier = notifier
        self.watchdog = watchdog
        self.tick = min(tick, watchdog) if watchdog else tick
        self.clock = clock
        self._started_at = clock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status = ""
        self._starving = False
        self._extend_usec = int(max(EXTEND_WINDOW, 3 * self.tick) * 1e6)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._started_at = self.clock()
        self.host.lifecycle.subscribe(self._on_move)
        self.notifier.notify(*self._status_fields("starting"), *self._extend_fields())
        self._thread = threading.Thread(target=self._loop, name="servicehost-systemd", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(SEND_TIMEOUT * 2)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_move(self, old: HostState, new: HostState) -> None:
        try:
            if new is HostState.RUNNING and old is HostState.STARTING:
                self.notifier.notify("READY=1", *self._status_fields())
            elif new is HostState.STOPPING:
                self.notifier.notify("STOPPING=1", *self._status_fields(), *self._extend_fields())
            else:
                self.notifier.notify(*self._status_fields())
        except Exception as exc:  # noqa: BLE001  a listener must never break a lifecycle move
            logs.systemd_move_not_told(log, old.value, new.value, exc)

    def reload(self) -> None:
        """The services' ``reload()`` between RELOADING=1 and READY=1 (SIGHUP, control channel)."""
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")
        try:
            self.host.reload()
        finally:
            self.notifier.notify("READY=1", *self._status_fields())

    # -- the tick loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        self.step()
        while not self._closing.wait(self.tick):
            self.step()

    def step(self) -> None:
        """One tick: watchdog, timeout extension, status. Public for tests that drive the clock."""
        try:
            fields: list[str] = []
            if self.watchdog:
                fields += self._watchdog_fields()
            fields += self._extend_fields()
            status = self._status_text()
            if status != self._last_status:
                fields.append(f"STATUS={status}")
            if fields:
                self.notifier.notify(*fields)
                self._last_status = status
        except Exception as exc:  # noqa: BLE001  keep ticking: one bad read must not stop the watchdog
            logs.systemd_tick_failed(log, exc)

    def _watchdog_fields(self) -> list[str]:
        hung = self.host.hung()
        if self.host.healthy():
            if self._starving:
                self._starving = False
                logs.systemd_watchdog_fed(log)
            return ["WATCHDOG=1"]
        if not self._starving:
            self._starving = True
            what = ", ".join(f"{b.component}/{b.worker} in {b.current}" for b in hung) or "the host is failing"
            logs.systemd_watchdog_starved(log, what)
        return []

    def _extend_fields(self) -> list[str]:
        """EXTEND_TIMEOUT_USEC while a start or a drain is under way, within the host's own limits:
        the start until start_timeout (+ slack) has passed, the stop until its deadline."""
        state = self.host.state
        if state in (HostState.CREATED, HostState.STARTING):
            if self.clock() - self._started_at < self.host.config.start_timeout + START_MARGIN:
                return [f"EXTEND_TIMEOUT_USEC={self._extend_usec}"]
        elif state is HostState.STOPPING:
            token = self.host.stop_token
            if not token.forced and not token.deadline.expired:
                return [f"EXTEND_TIMEOUT_USEC={self._extend_usec}"]
        return []

    def _status_text(self, state: str | None = None) -> str:
        if state is None and self.host.state is HostState.CREATED:
            state = "starting"  # run() has begun; the host has not moved yet
        return one_line(state if state is not None else self.host.status_line())

    def _status_fields(self, state: str | None = None) -> list[str]:
        text = self._status_text(state)
        self._last_status = text
        return [f"STATUS={text}"]


__all__ = ["EXTEND_WINDOW", "SEND_TIMEOUT", "TICK", "Notifier", "NotifySession", "monotonic_usec",
           "watchdog_interval"]
