"""EventServer: one selector thread serves many TCP clients; requests run on a ThreadPool.

How a request travels:

1. The selector thread (``<name>-selector``) accepts clients and reads from them without
   blocking. The framing (:class:`LineFraming` by default: one request per ``\\n``-ended line)
   cuts complete requests out of each connection's buffer.
2. Each request goes to a :class:`~servicehost.workers.thread_pool.ThreadPool` worker, which
   calls ``handler(request, peer)``. The handler returns the reply (bytes) or ``None`` (no reply).
3. The worker hands the reply back through a deque and wakes the selector thread with one byte
   on a socketpair; the selector thread writes it. The replies of one connection are written in
   the order of its requests, whatever order the workers finish in (pipelining is safe).

Bounds (nothing grows without limit):

* ``max_connections`` clients at once. When a new client comes while the server is full, a
  connection makes room (closed, counted as evicted, logged once per episode): one already
  closing (half-closed, all answered), else the one idle the longest, else one with an unfinished
  request that has no request in flight; a connection whose
  requests are running or whose replies are being written is never chosen. Only when every
  connection is busy is the newcomer accepted and closed at once (counted as refused). Running out
  of file descriptors (EMFILE) makes room the same way. ``start()`` raises the process's soft
  open-file limit to ``max_connections`` plus a margin when the hard limit allows it;
* time, so a client that says nothing cannot hold a connection forever: ``idle_timeout`` (60 s)
  closes a connection that has nothing in progress and sends nothing, or that does not read its
  replies; ``read_timeout`` (10 s) is how long one request may take to arrive, counted from its
  first byte (a client sending one byte at a time does not restart it): then no more is read and
  the connection is closed after the replies to its earlier requests. Waiting for the handler is
  not idling. Timers are kept in insertion-ordered maps, so finding the longest-idle connection
  and the next expiry costs O(1), whatever the number of connections;
* ``queue_size + workers`` requests in the pool. While it is full the selector stops reading
  from clients, so their bytes wait in the kernel and then in the clients (TCP backpressure)
  instead of in this process;
* per connection: ``max_pipelined`` requests in flight, and about 1 MiB of replies the client
  has not read yet, before reading from it pauses; ``max_line`` bytes per request (a longer
  one closes the connection with a warning, after the replies to the requests before it).

A client that is gone (a reset, or a write that fails) is closed at once; its requests still
queued in the pool are cancelled, not run: ``connection_counters().cancelled`` counts them, and
``counters()`` leaves them out of ``submitted`` and ``completed`` (they are neither completed nor
failed).

Stop (the Component protocol): ``close()`` stops accepting (the listening socket is closed) and
stops reading new requests. ``drain(deadline)`` runs the requests already read, writes their
replies, half-closes each connection (the client sees EOF right after its last reply) and closes
it when the client closes too, or after half a second. At the deadline the connections are
closed and what was not answered is reported (:class:`~servicehost.workers.Unfinished`, kind
``"requests"``).

On Windows the selector is ``select()``, which handles at most 512 sockets: keep
``max_connections`` below that there.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, Self

from .. import logs
from ..errors import QueueClosed, QueueFull, StartupError
from ..stopping import Deadline
from ..components import Beat, Counters, Measures, Unfinished
from ._supervision import Drains
from .thread_pool import ThreadPool

log = logging.getLogger("servicehost.workers")
_monotonic = time.monotonic

Handler = Callable[[bytes, Any], "bytes | None"]
"""``handler(request, peer) -> reply | None``; ``peer`` is the client's address from accept()."""

_RECV_SIZE = 65536
_OUT_HIGH = 1 << 20  # stop reading from a client while this many reply bytes wait for it
_LINGER = 0.5  # seconds a half-closed connection waits for the client to close its side
_ACCEPT_BATCH = 64  # accepts per wake-up, so a connection storm cannot starve the replies
_ACCEPT_RETRY = 0.1  # pause accepting this long after EMFILE and the like
_ABORT_GRACE = 2.0  # how long drain waits for the selector thread after asking it to abort
_FAILED = object()  # a completion whose handler raised
_CANCELLED = object()  # a request of a closed connection, taken off the pool without running
_FD_MARGIN = 64  # descriptors beyond max_connections: listener, selector, wake-up pair, logs, files
_EVICT_SCAN = 16  # unfinished-request connections looked at for one with nothing in flight
_NO_ROOM = (errno.EMFILE, errno.ENFILE)

_OPEN, _FINISHING, _LINGERING = 0, 1, 2  # connection states, in this order only
_LISTENER, _WAKE = object(), object()  # selector keys' data for the two special sockets


class FrameTooLong(ValueError):
    """A request is longer than the framing allows; its connection is closed."""


class Framing(Protocol):
    """How requests are cut out of a connection's byte stream, and how replies are framed."""

    def split(self, buffer: bytearray, limit: int) -> list[bytes]:
        """Remove and return up to ``limit`` complete requests from the front of ``buffer``.

        Raise :class:`FrameTooLong` when the next request can never fit (only when no request
        was returned, so the ones before it are still served)."""

    def encode(self, reply: bytes) -> bytes:
        """The bytes to write for one reply."""


class LineFraming:
    """One request per line: bytes up to ``\\n`` (a ``\\r`` before it is dropped), at most
    ``max_line`` bytes without the ``\\n``. A reply gets a ``\\n`` unless it ends with one."""

    def __init__(self, max_line: int = 65536) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        self.max_line = max_line

    def split(self, buffer: bytearray, limit: int) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        find = buffer.find
        while len(out) < limit:
            end = find(b"\n", start)
            if end < 0:
                if not out and len(buffer) - start > self.max_line:
                    raise FrameTooLong(f"line longer than {self.max_line} bytes")
                break
            if end - start > self.max_line:
                if not out:
                    raise FrameTooLong(f"line of {end - start} bytes, longer than {self.max_line}")
                break
            stop = end - 1 if end > start and buffer[end - 1] == 13 else end  # 13: "\r"
            out.append(bytes(buffer[start:stop]))
            start = end + 1
        if start:
            del buffer[:start]
        return out

    def encode(self, reply: bytes) -> bytes:
        return reply if reply.endswith(b"\n") else reply + b"\n"


class BindError(StartupError, OSError):
    """The server could not listen on its address (an ``OSError`` and a ``StartupError``)."""

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class ConnectionCounters:
    """A snapshot of an EventServer's connection counters."""

    name: str
    accepted: int
    """Connections taken into service since start."""
    open: int
    refused: int
    """Connections accepted and closed at once: ``max_connections`` reached, or closing."""
    oversize: int
    """Connections closed because a request was longer than the framing allows."""
    errors: int
    """Connections ended by a reset or another socket error."""
    evicted: int = 0
    """Connections closed to make room for a new client (the longest-idle first)."""
    idle_timeouts: int = 0
    """Connections closed after ``idle_timeout`` without a request, or without reading replies."""
    read_timeouts: int = 0
    """Connections whose request did not arrive whole within ``read_timeout`` of its first byte."""
    cancelled: int = 0
    """Requests of closed connections taken off the pool without running (not completed, not failed)."""

    def summary(self) -> str:
        return (f"{self.name}: {self.open} open, {self.accepted} accepted, {self.refused} refused, "
                f"{self.evicted} evicted, {self.idle_timeouts + self.read_timeouts} timed out, "
                f"{self.oversize} oversize, {self.errors} errors, {self.cancelled} requests cancelled")


class _Conn:
    """One client. Touched only by the selector thread, except ``peer`` (read by workers)."""

    __slots__ = (
        "sock", "peer", "label", "inbuf", "out", "out_replies", "next_seq", "flush_seq", "done",
        "state", "mask", "parked", "backlog", "feed_ok", "eof", "failed", "closed",
    )

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.peer = peer
        self.label = _address(peer)
        self.inbuf = bytearray()
        self.out = bytearray()
        self.out_replies = 0  # replies in ``out`` (not completely written yet)
        self.next_seq = 0  # sequence number of the next request handed to the pool
        self.flush_seq = 0  # sequence number of the next reply to append to ``out``
        self.done: dict[int, Any] = {}  # replies that finished before an earlier one
        self.state = _OPEN
        self.mask = 0  # events registered with the selector (0: not registered)
        self.parked = False  # waiting for room in the pool
        self.backlog = False  # the buffer may hold complete requests not handed out yet
        self.feed_ok = True  # False after an oversize request or a handler failure
        self.eof = False  # the client closed its sending side
        self.failed = False  # a handler raised: replies after it are dropped
        self.closed = False

    @property
    def pending(self) -> int:
        """Requests handed to the pool whose reply is not in ``out`` yet."""
        return self.next_seq - self.flush_seq


class _Serve:
    """The pool task: run the handler, post its reply back to the selector thread.

    It carries the handler's name, so the pool's heartbeats and failure logs name user code.
    """

    def __init__(self, handler: Handler, post: Callable[[_Conn, int, Any], None]) -> None:
        self.handler = handler
        self.post = post
        self.__qualname__ = getattr(handler, "__qualname__", None) or type(handler).__qualname__
        self.__module__ = getattr(handler, "__module__", None) or ""

    def __call__(self, conn: _Conn, seq: int, request: bytes) -> None:
        if conn.closed:  # the client is gone (set by the selector thread): nobody wants the reply
            self.post(conn, seq, _CANCELLED)
            return
        try:
            reply = self.handler(request, conn.peer)
            if reply is not None and not isinstance(reply, (bytes, bytearray, memoryview)):
                raise TypeError(f"the handler must return bytes or None, not {type(reply).__name__}")
        except BaseException:
            self.post(conn, seq, _FAILED)
            raise  # the pool logs it with its traceback and counts it as failed
        self.post(conn, seq, None if reply is None else bytes(reply))


class EventServer(Drains):
    """A TCP server: one selector thread, handlers on a thread pool; a
    :class:`~servicehost.workers.Component`.

    ``start()`` binds and starts the threads (raises :class:`BindError` naming ``host:port``);
    the constructor only checks its arguments. ``handler`` runs on the pool's threads, so it may
    block; it must be thread-safe. It raising closes that client's connection (after the replies
    to its earlier requests) and is logged and counted as a failed task.

    ``idle_timeout`` and ``read_timeout`` are seconds (None: never); see the module docstring.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "server",
        workers: int = 8,
        queue_size: int = 1024,
        max_connections: int = 1024,
        max_line: int = 65536,
        max_pipelined: int = 128,
        framing: Framing | None = None,
        backlog: int = 128,
        idle_timeout: float | None = 60.0,
        read_timeout: float | None = 10.0,
    ) -> None:
        for label, value in (("workers", workers), ("queue_size", queue_size),
                             ("max_connections", max_connections), ("max_pipelined", max_pipelined),
                             ("backlog", backlog)):
            if value < 1:
                raise ValueError(f"{name}: {label} must be >= 1, got {value}")
        if not 0 <= port <= 65535:
            raise ValueError(f"{name}: port must be 0-65535, got {port}")
        for label, limit in (("idle_timeout", idle_timeout), ("read_timeout", read_timeout)):
            if limit is not None and not (isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0):
                raise ValueError(f"{name}: {label} must be a number of seconds > 0 (or None: never), got {limit!r}")
        self.handler = handler
        self.host = host
        self.port = port
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        self.max_connections = max_connections
        self.max_pipelined = max_pipelined
        self.backlog = backlog
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self.framing: Framing = framing if framing is not None else LineFraming(max_line)
        self._capacity = queue_size + workers  # requests in the pool (queued + running) at most
        self._pool: ThreadPool | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        # Commands from other threads: set a flag, then wake the selector thread.
        self._closing = False
        self._paused = False
        self._abort = False
        self._done: deque[tuple[_Conn, int, Any]] = deque()  # completions, from the workers
        self._wake_armed = False
        self._left = (0, 0, 0)  # at an abort: (requests read not handed out, in the pool, replies unsent)
        # Selector-thread state.
        self._conns: set[_Conn] = set()
        self._parked: deque[_Conn] = deque()
        # Connections waiting for their client, each map in the order its timer started (so the
        # first entry expires first, and the first idle one is the longest idle): value = when.
        self._idle: OrderedDict[_Conn, float] = OrderedDict()  # nothing in progress, reading
        self._partial: OrderedDict[_Conn, float] = OrderedDict()  # a request begun, not complete
        self._unread: OrderedDict[_Conn, float] = OrderedDict()  # replies not taken since then
        self._lingering: OrderedDict[_Conn, float] = OrderedDict()  # half-closed, until
        self._now = _monotonic()  # the selector thread's clock, read once per wake-up
        self._outstanding = 0
        self._listening = False  # the listener is registered with the selector
        self._listener_closed = False
        self._applied_paused = False
        self._accept_retry_at: float | None = None
        self._refusing = False
        self._evicting = False
        self._accepted = self._refused = self._oversize = self._errors = 0
        self._evicted = self._idle_timeouts = self._read_timeouts = self._cancelled = 0

    # -- start ----------------------------------------------------------------------------------
    def start(self) -> EventServer:
        """Bind, listen and start the selector thread and the pool. Returns self. ``Service.use``
        calls it; calling it again while the server runs does nothing (it is already live).

        Raises BindError (address in use, unknown host, no permission) naming ``host:port``;
        RuntimeError after ``close()``.
        """
        if self._closing:
            raise RuntimeError(f"{self.name}: start() after close()")
        if self._thread is not None:
            return self
        self._listener = self._bind()
        self._room_for_descriptors()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._listening = True
        self._serve = _Serve(self.handler, self._post)
        self._pool = ThreadPool(self.workers, name=self.name, queue_size=self._capacity)
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-selector", daemon=True)
        self._thread.start()
        self._wakeup()  # a pause() before start() takes effect now
        logs.server_listening(log, self.name, _address(self._address))
        return self

    def _bind(self) -> socket.socket:
        where = _address((self.host, self.port))
        try:
            # An ASCII name as bytes: a str is IDNA-encoded, which imports unicodedata (~0.5 MiB).
            host = self.host.encode("ascii") if self.host and self.host.isascii() else self.host or None
            infos = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise BindError(exc.errno, f"{self.name}: cannot listen on {where}: unknown host ({exc.strerror})") from exc
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name == "nt":
                # Windows' SO_REUSEADDR would let a second process take the port silently;
                # exclusive use makes a clash an error, as it is on POSIX.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
            else:
                # POSIX: rebind at once after a restart while old connections sit in TIME_WAIT.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            in_use = exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))
            why = "address already in use (another process listens there)" if in_use else (exc.strerror or str(exc))
            raise BindError(exc.errno, f"{self.name}: cannot listen on {where}: {why}") from exc
        host, port = sock.getsockname()[:2]
        self._address = (host, port)
        return sock

    def _room_for_descriptors(self) -> None:
        """Raise the soft open-file limit to what max_connections needs, up to the hard limit
        (the way systemd documents for programs that can handle many descriptors: its default
        soft limit, 1024, exists for select() users; this server does not use select() on POSIX)."""
        if os.name == "nt":
            return
        import resource

        needed = self.max_connections + _FD_MARGIN
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= needed:
            return
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass  # not allowed here (e.g. a sandbox): the warning below says what the limit is
        if soft < needed:
            logs.open_files_limited(log, self.name, soft, self.max_connections, _FD_MARGIN)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) listened on, known after ``start()`` (port 0 becomes the real one)."""
        if self._address is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._address

    # -- commands (any thread) ------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting and reading new requests. Never blocks: the selector thread closes the
        listening socket as soon as it wakes (microseconds). Idempotent."""
        self._closing = True
        self._paused = False  # a paused server must still drain when the service stops
        self._wakeup()

    def pause(self) -> None:
        """Stop accepting and reading; requests already read finish and are answered."""
        self._paused = True
        self._wakeup()

    def resume(self) -> None:
        self._paused = False
        self._wakeup()

    def hold_intake(self) -> None:
        """A host drain: as ``pause`` — no new connection or request is taken; requests already
        read finish and are answered."""
        self.pause()

    def release_intake(self) -> None:
        self.resume()

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close; answer every request already read, then close the connections, until
        ``deadline``. Returns what was not answered then (None: everything was)."""
        self.close()
        if self._thread is None or self._pool is None:
            return None
        self._thread.join(deadline.remaining())
        aborted = self._thread.is_alive()
        if aborted:
            self._abort = True
            self._wakeup()
            self._thread.join(_ABORT_GRACE)
        pool_left = self._pool.drain(deadline)
        if not aborted and pool_left is None:
            return None
        buffered, outstanding, unsent = self._left
        pool_queued = pool_left.queued if pool_left else 0
        queued = buffered + pool_queued
        running = max(0, outstanding - pool_queued) + unsent
        if queued + running == 0:
            return None
        what = tuple(pool_left.running_what) if pool_left else ()
        if unsent:
            what += (f"{unsent} {'reply' if unsent == 1 else 'replies'} not sent",)
        return Unfinished(self.name, "requests", queued, running, False, what)

    def __enter__(self) -> Self:
        self.start()  # idempotent: a started server stays as it is
        return self

    # -- observation ----------------------------------------------------------------------------
    def counters(self) -> Counters:
        """Requests: submitted (read and handed to the pool), completed, failed (the handler
        raised), in flight, queued; sampled handler run times. Cancelled requests (their client
        was gone before they started) are in neither ``submitted`` nor ``completed``."""
        if self._pool is None:
            return Counters(self.name, 0, 0, 0, 0, 0)
        counters = self._pool.counters()
        cancelled = self._cancelled
        if not cancelled:
            return counters
        # A cancelled request ran as a no-op pool task: the pool counted it as completed.
        return dataclasses.replace(counters, submitted=max(0, counters.submitted - cancelled),
                                   completed=max(0, counters.completed - cancelled))

    def measures(self) -> Measures:
        """The pool's: handler run times, busy time, waits (requests refused for a full queue are
        the connection counters' business)."""
        return Measures() if self._pool is None else self._pool.measures()

    def connection_counters(self) -> ConnectionCounters:
        return ConnectionCounters(self.name, self._accepted, len(self._conns), self._refused,
                                  self._oversize, self._errors, self._evicted, self._idle_timeouts,
                                  self._read_timeouts, self._cancelled)

    def beats(self) -> Iterator[Beat]:
        """One per pool thread: busy since when, in which handler."""
        if self._pool is not None:
            yield from self._pool.beats()

    # -- hand-back from the workers -------------------------------------------------------------
    def _post(self, conn: _Conn, seq: int, reply: Any) -> None:
        self._done.append((conn, seq, reply))
        self._wakeup()

    def _wakeup(self) -> None:
        # The selector thread disarms before it empties ``_done``, so an append made after its
        # last look always finds the flag clear and sends a byte: no completion is missed.
        if self._wake_armed or self._thread is None:
            return
        self._wake_armed = True
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # the socketpair is full of wake-ups already: the selector will wake
        except OSError:
            pass  # closed: the selector thread has ended, there is nothing left to wake

    # -- the selector thread --------------------------------------------------------------------
    def _loop(self) -> None:
        select = self._selector.select
        try:
            while True:
                events = select(self._timeout())
                self._now = _monotonic()
                for key, mask in events:
                    what = key.data
                    if what is _WAKE:
                        self._on_wake()
                    elif what is _LISTENER:
                        self._accept()
                    elif not what.closed:
                        if mask & selectors.EVENT_WRITE:
                            self._flush(what)
                        if mask & selectors.EVENT_READ and not what.closed:
                            self._read(what)
                if self._done:
                    self._complete()
                self._apply_commands()
                self._tick()
                if self._abort or (self._closing and not self._conns):
                    break
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, self.name, f"{self.name}-selector", exc_info=exc)
            raise
        finally:
            self._finish_loop()

    def _timeout(self) -> float | None:
        """Seconds until the next timer expires (None: no timer runs). O(1): each map's first
        entry is its earliest."""
        times = []
        if self._lingering:
            times.append(_first(self._lingering))
        if self.idle_timeout is not None:
            if self._idle:
                times.append(_first(self._idle) + self.idle_timeout)
            if self._unread:
                times.append(_first(self._unread) + self.idle_timeout)
        if self.read_timeout is not None and self._partial:
            times.append(_first(self._partial) + self.read_timeout)
        if self._accept_retry_at is not None:
            times.append(self._accept_retry_at)
        return max(0.0, min(times) - _monotonic()) if times else None

    def _on_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass  # emptied
        self._wake_armed = False

    def _apply_commands(self) -> None:
        if self._closing and not self._listener_closed:
            self._listener_closed = True
            self._stop_listening()
            self._listener.close()
            for conn in list(self._conns):
                if conn.state == _OPEN:
                    conn.state = _FINISHING  # requests already read are still served
                    self._feed(conn)
                    self._settle(conn)
        if self._paused != self._applied_paused:
            self._applied_paused = self._paused
            if self._paused:
                self._stop_listening()
            elif not self._listener_closed and self._accept_retry_at is None:
                self._start_listening()
            for conn in list(self._conns):
                self._set_interest(conn)

    def _start_listening(self) -> None:
        if not self._listening:
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
            self._listening = True

    def _stop_listening(self) -> None:
        if self._listening:
            self._selector.unregister(self._listener)
            self._listening = False

    def _tick(self) -> None:
        """Expire the timers that are due: only the first entries of each map are looked at."""
        now = self._now = _monotonic()
        lingering = self._lingering
        while lingering and _first(lingering) <= now:
            conn, _ = lingering.popitem(last=False)
            logs.connection_closed(log, self.name, conn.label, f"the client did not close within {_LINGER}s")
            self._close(conn)
        if self.idle_timeout is not None:
            expired = now - self.idle_timeout
            idle = self._idle
            while idle and _first(idle) <= expired:
                conn, _ = idle.popitem(last=False)
                self._idle_timeouts += 1
                logs.connection_closed(log, self.name, conn.label, f"idle for idle_timeout={self.idle_timeout:g}s")
                self._close(conn)
            unread = self._unread
            while unread and _first(unread) <= expired:
                conn, _ = unread.popitem(last=False)
                self._idle_timeouts += 1
                logs.connection_closed(log, self.name, conn.label,
                                       f"read none of its replies for idle_timeout={self.idle_timeout:g}s")
                self._close(conn)
        if self.read_timeout is not None:
            expired = now - self.read_timeout
            partial = self._partial
            while partial and _first(partial) <= expired:
                conn, _ = partial.popitem(last=False)
                self._read_timeouts += 1
                logs.connection_closed(
                    log, self.name, conn.label,
                    f"a request not complete {self.read_timeout:g}s after its first byte (read_timeout); "
                    "closed after the replies before it")
                self._stop_reading(conn)
        if self._accept_retry_at is not None and now >= self._accept_retry_at:
            self._accept_retry_at = None
            if not self._listener_closed and not self._paused:
                self._start_listening()

    # -- accepting ------------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while waiting in the backlog
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: out of descriptors or memory
                if exc.errno in _NO_ROOM and not self._closing and self._make_room():
                    continue  # a descriptor is free again: take the client it was refused for
                logs.accept_failed(log, self.name, exc, _ACCEPT_RETRY)
                self._stop_listening()
                self._accept_retry_at = _monotonic() + _ACCEPT_RETRY
                return
            if len(self._conns) < self.max_connections and not self._closing:
                self._refusing = self._evicting = False  # a full episode, if any, is over
            elif self._closing or not self._make_room():
                self._refused += 1  # counted first: the client may look as soon as it sees EOF
                sock.close()
                if not self._refusing and not self._closing:
                    self._refusing = True
                    logs.connections_refused(log, self.name, self.max_connections, self._refused)
                continue
            sock.setblocking(False)
            try:
                # Replies are small and pipelined: Nagle's delay would hold each one back.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                logs.connection_error(log, self.name, _address(peer), f"TCP_NODELAY not set ({exc}); served anyway")
            conn = _Conn(sock, peer)
            self._conns.add(conn)
            self._accepted += 1
            self._set_interest(conn)

    def _make_room(self) -> bool:
        """Close one connection nobody is waiting on, to let a new client in: a half-closed one,
        else the longest idle, else the oldest unfinished request with nothing in flight.
        False when every connection has work in progress."""
        conn = _first_key(self._lingering) or _first_key(self._idle)
        if conn is None:
            for n, candidate in enumerate(self._partial):
                if n == _EVICT_SCAN:
                    break
                if candidate.pending == 0 and not candidate.out:
                    conn = candidate
                    break
        if conn is None:
            return False
        self._evicted += 1
        if not self._evicting:
            self._evicting = True
            logs.connections_evicted(log, self.name, self.max_connections, self._evicted)
        logs.connection_closed(log, self.name, conn.label, "closed to make room for a new client (max_connections)")
        self._close(conn)
        return True

    # -- reading --------------------------------------------------------------------------------
    def _read(self, conn: _Conn) -> None:
        if conn.state == _LINGERING:
            self._read_lingering(conn)
            return
        if conn.state != _OPEN or self._paused or self._closing:
            self._set_interest(conn)
            return
        if self._outstanding >= self._capacity:  # the pool is full: leave the bytes in the kernel
            self._park(conn)
            self._set_interest(conn)
            return
        try:
            data = conn.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, exc)
            return
        if not data:
            conn.eof = True
            conn.state = _FINISHING  # the client sent all it will: answer it, then close
        else:
            conn.inbuf += data
        self._feed(conn)
        self._settle(conn)

    def _read_lingering(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logs.connection_closed(log, self.name, conn.label, f"while closing: {exc}")
            self._close(conn)
            return
        if not data:
            self._close(conn)  # the client closed too: the normal end
        # else: a request sent after the stop began; never read as one, so dropped

    def _park(self, conn: _Conn) -> None:
        if not conn.parked:
            conn.parked = True
            self._parked.append(conn)

    def _feed(self, conn: _Conn) -> None:
        """Hand the complete requests in ``conn``'s buffer to the pool, as far as there is room."""
        if not conn.feed_ok or conn.closed or conn.state == _LINGERING:
            return
        room = min(self._capacity - self._outstanding, self.max_pipelined - conn.pending)
        if room <= 0:
            conn.backlog = True
            if self._outstanding >= self._capacity:
                self._park(conn)
            return
        try:
            requests = self.framing.split(conn.inbuf, room)
        except FrameTooLong as exc:
            self._oversize += 1
            logs.connection_error(log, self.name, conn.label, f"{exc}; closing it after the replies before it")
            self._stop_reading(conn)
            return
        if requests:  # what is left in the buffer begins a new request: its read timer restarts
            self._partial.pop(conn, None)
        submit = self._pool.submit  # type: ignore[union-attr]
        serve = self._serve
        for request in requests:
            seq = conn.next_seq
            try:
                submit(serve, conn, seq, request, timeout=0)
            except (QueueClosed, QueueFull) as exc:  # cannot happen while the counts are right
                logs.connection_error(log, self.name, conn.label, f"request dropped: the pool refused it ({exc!r})")
                conn.feed_ok = False
                conn.state = max(conn.state, _FINISHING)
                break
            conn.next_seq = seq + 1
            self._outstanding += 1
        conn.backlog = len(requests) == room
        if conn.backlog and self._outstanding >= self._capacity:
            self._park(conn)

    def _stop_reading(self, conn: _Conn) -> None:
        """Drop the unfinished request and read no more; answer what is in flight, then close."""
        conn.inbuf.clear()
        conn.feed_ok = False
        conn.backlog = False
        conn.state = max(conn.state, _FINISHING)
        self._settle(conn)

    # -- replies --------------------------------------------------------------------------------
    def _complete(self) -> None:
        touched: dict[_Conn, None] = {}
        done = self._done
        encode = self.framing.encode
        while done:
            conn, seq, reply = done.popleft()
            self._outstanding -= 1
            if reply is _CANCELLED:
                self._cancelled += 1
                continue
            if conn.closed:
                continue
            conn.done[seq] = reply
            pending = conn.done
            while conn.flush_seq in pending:
                reply = pending.pop(conn.flush_seq)
                conn.flush_seq += 1
                if conn.failed:
                    continue
                if reply is _FAILED:
                    conn.failed = True
                    conn.feed_ok = False
                    conn.inbuf.clear()
                    conn.state = max(conn.state, _FINISHING)
                    logs.connection_error(log, self.name, conn.label,
                                          "the handler raised; closing it after the replies before")
                elif reply is not None:
                    conn.out += encode(reply)
                    conn.out_replies += 1
            touched[conn] = None
        for conn in touched:
            self._flush(conn)
            if not conn.closed:
                self._feed(conn)
                self._settle(conn)
        while self._parked and self._outstanding < self._capacity:
            conn = self._parked.popleft()
            conn.parked = False
            if not conn.closed:
                self._feed(conn)
                self._settle(conn)

    def _flush(self, conn: _Conn) -> None:
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._drop(conn, exc)
                return
            if sent:
                del conn.out[:sent]
                self._unread.pop(conn, None)  # the client reads: its timer restarts
            if not conn.out:
                conn.out_replies = 0
        self._settle(conn)

    # -- connection state -----------------------------------------------------------------------
    def _settle(self, conn: _Conn) -> None:
        """After any change: half-close a connection that is finished, and set its interest."""
        if conn.closed:
            return
        if conn.state == _FINISHING and conn.pending == 0 and not conn.out and not conn.parked \
                and not (conn.feed_ok and conn.backlog):
            if conn.inbuf and conn.feed_ok:
                logs.connection_closed(log, self.name, conn.label,
                                       f"{len(conn.inbuf)} bytes of an unfinished request dropped")
            if conn.eof:
                self._close(conn)
                return
            try:
                # Half-close: the client reads every reply, then EOF. Closing outright with its
                # later bytes unread would send a reset, which may destroy replies in flight.
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                self._drop(conn, exc)
                return
            conn.state = _LINGERING
            conn.inbuf = bytearray()
            self._lingering[conn] = self._now + _LINGER
        self._set_interest(conn)

    def _set_interest(self, conn: _Conn) -> None:
        want = 0
        if conn.state == _LINGERING:
            want = selectors.EVENT_READ
        elif (conn.state == _OPEN and not self._paused and not self._closing and not conn.parked
              and not conn.backlog and conn.pending < self.max_pipelined and len(conn.out) < _OUT_HIGH):
            want = selectors.EVENT_READ
        if conn.out:
            want |= selectors.EVENT_WRITE
        if want != conn.mask:
            if conn.mask == 0:
                self._selector.register(conn.sock, want, conn)
            elif want == 0:
                self._selector.unregister(conn.sock)
            else:
                self._selector.modify(conn.sock, want, conn)
            conn.mask = want
        self._track(conn)

    def _track(self, conn: _Conn) -> None:
        """Start or stop the timers of what ``conn`` waits for from its client. A timer already
        running keeps its start (a dripping client does not restart its read timer)."""
        if conn.closed:
            return
        now = self._now
        reading = conn.state == _OPEN and conn.mask & selectors.EVENT_READ
        if reading and not conn.inbuf and not conn.pending and not conn.out:
            if conn not in self._idle:
                self._idle[conn] = now
        elif self._idle:
            self._idle.pop(conn, None)
        if reading and conn.inbuf:  # only an unfinished request: complete ones stop the reading
            if conn not in self._partial:
                self._partial[conn] = now
        elif self._partial:
            self._partial.pop(conn, None)
        if conn.out:
            if conn not in self._unread:
                self._unread[conn] = now
        elif self._unread:
            self._unread.pop(conn, None)

    def _drop(self, conn: _Conn, exc: OSError) -> None:
        """A socket error (usually a reset by the client): close at once."""
        self._errors += 1
        logs.connection_closed(log, self.name, conn.label, f"{type(exc).__name__}: {exc}")
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.mask:
            self._selector.unregister(conn.sock)
            conn.mask = 0
        conn.sock.close()
        self._conns.discard(conn)
        for timers in (self._idle, self._partial, self._unread, self._lingering):
            timers.pop(conn, None)

    def _finish_loop(self) -> None:
        """On the way out (done, aborted at the deadline, or crashed): count, then close all."""
        if self._done:
            self._complete()
        buffered = unsent = 0
        for conn in self._conns:
            if conn.feed_ok and conn.state != _LINGERING and conn.inbuf:
                try:
                    buffered += len(self.framing.split(conn.inbuf, 1 << 30))
                except FrameTooLong:
                    pass  # an oversize request is no request: nothing to report
            if not conn.failed:
                unsent += conn.out_replies + sum(1 for r in conn.done.values() if r is not None and r is not _FAILED)
        self._left = (buffered, self._outstanding, unsent)
        for conn in list(self._conns):
            self._close(conn)
        if not self._listener_closed:
            self._listener_closed = True
            self._stop_listening()
            self._listener.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _first(timers: OrderedDict[_Conn, float]) -> float:
    """The earliest time in a (non-empty) timer map."""
    return next(iter(timers.values()))


def _first_key(timers: OrderedDict[_Conn, float]) -> _Conn | None:
    return next(iter(timers), None)


def _address(addr: Any) -> str:
    """``host:port`` (``[v6]:port``) for logs and errors."""
    try:
        host, port = addr[0], addr[1]
    except (TypeError, IndexError):
        return str(addr)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
