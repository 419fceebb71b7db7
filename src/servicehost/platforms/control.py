"""The control channel: pause, continue, control CODE, reload, stop and status of a running
service on Linux, where the service managers (systemd, supervisord) have no such verbs. A run in a
terminal serves it too (:func:`serving`), so ``servicehost status NAME`` finds it
(:func:`foreground_status`).

The service (its platform's ``run``) serves it with :class:`ControlServer`; a Manager talks to it
with :class:`ControlClient`. The socket's path is derived from the name the manager knows the
service by (its unit or program name), so a Manager finds it without asking anyone:

    runtime base   $SERVICEHOST_RUNTIME_DIR        if set: a manager that prepares the directory
                                                   for the service passes it this way
                   /run/servicehost                for root
                   $XDG_RUNTIME_DIR/servicehost    for other users with a login session
                   /tmp/servicehost-<uid>          otherwise (made 0700, its owner checked)
    service dir    <base>/<name>                   made by the service before it binds: mode 0700
                                                   (0750 with ``group_access``), owner checked
    socket         <base>/<name>/control.sock      mode 0600 (0660)
    ready marker   <base>/<name>/ready             holds the pid while the host is ready

Who may talk to it: the directory is the first gate (only the service's user, and root, can reach
the socket); then the server reads each peer's credentials (``SO_PEERCRED``) and serves only root
and the service's own uid. Anyone else gets a refusal, and it is logged (event 5202).

Protocol: every message is a 4-byte big-endian length, then that many bytes of UTF-8 JSON (at most
64 KiB, nested at most 32 deep). Request ``{"command": NAME, "args": {...}}``; reply
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "what went wrong"}``. A connection may
carry several requests.

Hostile or broken peers cost the channel nothing but their own connection: each connection has
its own thread (at most ``max_connections``, 16; one more gets a "busy" reply and is closed). A
request must arrive whole within ``peer_timeout`` (5 s) of its first byte, however slowly it
drips, and a connection that starts no request within that time is closed. The size is checked
from the length header before the body is read (an oversized one gets a reply, then the connection
closes: its framing is lost), the nesting depth by a scan without recursion before the JSON is
parsed, and anything wrong with one request (not UTF-8, not JSON, not an object, a handler that
raises) gets an error reply; the connection goes on.

Commands are a table, name → handler(:class:`Request`) (:data:`COMMANDS`). Another issue adds one
by passing ``commands={**COMMANDS, "name": handler}`` to the server; nothing else changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import selectors
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import logs
from ..errors import IllegalTransition, StartupError, UsageError
from ..host import Host
from ..lifecycle import HostState
from ..stopping import Deadline

if TYPE_CHECKING:
    from .base import ServiceStatus

log = logging.getLogger("servicehost.platforms.control")

ENV_RUNTIME_DIR = "SERVICEHOST_RUNTIME_DIR"
SOCKET_NAME = "control.sock"
READY_MARKER = "ready"
MAX_MESSAGE = 64 * 1024
#: How deep a message's JSON may nest (requests and replies are flat; the stdlib parser recurses).
MAX_DEPTH = 32
#: Seconds a peer has to send one whole request, from its first byte, and to begin one.
PEER_TIMEOUT = 5.0
#: Control connections served at once (each on its own thread); one more is refused with a reply.
MAX_CONNECTIONS = 16
_LENGTH = struct.Struct(">I")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[][{}]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
#: Host states in which the service counts as ready (it has reached RUNNING and not begun stopping).
READY_STATES = frozenset({HostState.RUNNING, HostState.PAUSING, HostState.PAUSED, HostState.RESUMING})
#: A host state (what the channel answers) → the state ``servicehost status`` shows. A host that
#: answers is alive: stopping, stopped and failed mean it is on its way out.
STATUS_STATES: Mapping[str, str] = {
    HostState.CREATED.value: "starting", HostState.STARTING.value: "starting", HostState.RUNNING.value: "running",
    HostState.PAUSING.value: "pausing", HostState.PAUSED.value: "paused", HostState.RESUMING.value: "resuming",
    HostState.STOPPING.value: "stopping", HostState.STOPPED.value: "stopping", HostState.FAILED.value: "stopping",
}
#: Seconds ``status`` waits for a service's channel to answer.
STATUS_TIMEOUT = 5.0


class ControlChannelError(UsageError):
    """A control request could not be made, or the service refused it (exit code 2)."""


class ControlUnavailable(ControlChannelError):
    """Nothing answers at the control socket: the service is not running (or not ready yet)."""


class MessageError(ValueError):
    """One message cannot be taken (not UTF-8, not JSON, too deep, not an object); the framing
    is intact, so the connection can go on."""


class FrameTooLarge(MessageError):
    """A length header over :data:`MAX_MESSAGE`: the body is not read, so the framing is lost."""


class RequestTimeout(TimeoutError):
    """A message began but did not arrive whole in time."""


# -- where ------------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    """``name`` if it can name a directory and a manager's service; UsageError otherwise."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(
            f"service name {name!r}: expected letters, digits and _ . @ - (starting with a letter or digit, "
            "at most 128 characters); choose another with --name")
    return name


def runtime_base(env: Mapping[str, str] | None = None, euid: int | None = None) -> Path:
    """The directory holding every service's runtime directory (see the module docstring)."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if env.get(ENV_RUNTIME_DIR):
        return Path(env[ENV_RUNTIME_DIR])
    if euid == 0:
        return Path("/run/servicehost")
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "servicehost"
    return Path(f"/tmp/servicehost-{euid}")


def runtime_dir(name: str, env: Mapping[str, str] | None = None, euid: int | None = None) -> Path:
    """``<runtime base>/<name>``: the service's own runtime directory."""
    return runtime_base(env, euid) / check_name(name)


def socket_path(name: str, env: Mapping[str, str] | None = None, euid: int | None = None) -> Path:
    """Where the service called ``name`` listens (what a Manager connects to)."""
    return runtime_dir(name, env, euid) / SOCKET_NAME


def _private_dir(path: Path, mode: int, *, create_parents: bool) -> None:
    """Make ``path`` a directory owned by this user with exactly ``mode``; refuse anything else
    (a symlink, a file, a directory someone else owns) with what to do about it."""
    euid = os.geteuid()
    if create_parents:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StartupError(
            f"cannot create the runtime directory {path}: {exc.strerror}; create it for uid {euid} "
            f"or set {ENV_RUNTIME_DIR} to a directory this service may write") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError(f"runtime directory {path} is not a directory (a symlink or a file?); remove it")
    if st.st_uid != euid:
        raise StartupError(
            f"runtime directory {path} belongs to uid {st.st_uid}, not to this service's uid {euid}; "
            "remove it (or give it to this uid) and start again")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


# -- the wire ---------------------------------------------------------------------------------------
def encode_message(message: Mapping[str, Any]) -> bytes:
    """The frame for ``message``: length header and JSON body (ValueError if over MAX_MESSAGE)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"control message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    return _LENGTH.pack(len(data)) + data


def send_message(sock: socket.socket, message: Mapping[str, Any], *, deadline: float | None = None) -> None:
    """Send one message, all of it before ``deadline`` (a ``time.monotonic()`` value; None: the
    socket's own timeout for each write). TimeoutError when the peer does not read it in time."""
    data = memoryview(encode_message(message))
    if deadline is None:
        sock.sendall(data)
        return
    saved = sock.gettimeout()
    try:
        while data:
            sock.settimeout(_remaining(deadline))
            data = data[sock.send(data):]
    finally:
        sock.settimeout(saved)


def receive_message(sock: socket.socket, timeout: float | None = None, *,
                    deadline: float | None = None) -> dict[str, Any] | None:
    """The next message, or None when the peer closed the connection between messages.

    Waiting for its first byte takes as long as the socket's timeout allows (TimeoutError). From
    that byte on, the whole message must arrive within ``timeout`` seconds (None: the socket's
    timeout) and before ``deadline`` (``time.monotonic()``), however slowly it drips: else
    :class:`RequestTimeout`. :class:`FrameTooLarge` is raised from the length header alone;
    :class:`MessageError` for a body that is not a JSON object within :data:`MAX_DEPTH`.
    """
    first = sock.recv(_LENGTH.size)
    if not first:
        return None
    if timeout is None:
        timeout = sock.gettimeout()
    if timeout is not None:
        by = time.monotonic() + timeout
        deadline = by if deadline is None else min(deadline, by)
    head = first + _receive_exactly(sock, _LENGTH.size - len(first), deadline)
    (size,) = _LENGTH.unpack(head)
    if size > MAX_MESSAGE:
        raise FrameTooLarge(f"control message of {size} bytes is over the {MAX_MESSAGE}-byte limit")
    return parse_message(_receive_exactly(sock, size, deadline))


def parse_message(body: bytes) -> dict[str, Any]:
    """One message's body → the JSON object it holds; MessageError saying what is wrong with it.
    The nesting is measured first, without recursion, so no input can exhaust the stack."""
    depth = _nesting(body)
    if depth > MAX_DEPTH:
        raise MessageError(f"a control message may nest {MAX_DEPTH} levels deep; this one is nested deeper than that")
    try:
        message = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise MessageError("a control message must be UTF-8 JSON; this one is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise MessageError(f"a control message must be a JSON object; this one is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise MessageError(f"a control message must be a JSON object, not {type(message).__name__}")
    return message


def _nesting(body: bytes) -> int:
    """How deep ``body``'s brackets nest outside strings (stops counting past MAX_DEPTH)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b"", body)):
        if match.group() in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break
        else:
            depth -= 1
    return deepest


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise RequestTimeout("timed out")
    return left


def _receive_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks, left = [], size
    saved = sock.gettimeout()
    try:
        while left:
            if deadline is not None:
                sock.settimeout(_remaining(deadline))
            try:
                chunk = sock.recv(min(left, 65536))
            except TimeoutError:
                raise RequestTimeout("timed out") from None
            if not chunk:
                raise ConnectionError("the peer closed the connection in the middle of a message")
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        sock.settimeout(saved)
    return b"".join(chunks)


class Peer(NamedTuple):
    """Who is on the other end of a unix socket (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int

    @classmethod
    def of(cls, sock: socket.socket) -> Peer:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return cls(*struct.unpack("3i", creds))


# -- commands ---------------------------------------------------------------------------------------
class Request(NamedTuple):
    """What a command handler gets."""

    host: Host
    command: str
    args: Mapping[str, Any]
    peer: Peer
    serving_since: float
    """``time.monotonic()`` when the server started (the service's uptime starts there)."""


Handler = Callable[[Request], Any]


def _ping(req: Request) -> dict[str, Any]:
    state = req.host.state
    return {"pid": os.getpid(), "name": req.host.name, "state": state.value, "ready": state in READY_STATES}


def _status(req: Request) -> dict[str, Any]:
    return {
        **_ping(req),
        "uptime": time.monotonic() - req.serving_since,
        "healthy": req.host.healthy(),
        "status_line": req.host.status_line(),
        "counters": [dataclasses.asdict(c) for c in req.host.counters()],
    }


def _pause(req: Request) -> dict[str, Any]:
    try:
        req.host.pause()
    except IllegalTransition:
        raise ValueError(f"the service is {req.host.state.value}, not running") from None
    return _ping(req)


def _resume(req: Request) -> dict[str, Any]:
    try:
        req.host.resume()
    except IllegalTransition:
        raise ValueError(f"the service is {req.host.state.value}, not paused") from None
    return _ping(req)


def _control(req: Request) -> dict[str, Any]:
    code = req.args.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ValueError(f"control needs an integer code 128-255, got {code!r}")
    req.host.control(code)
    return _ping(req)


def _reload(req: Request) -> dict[str, Any]:
    req.host.reload()
    return _ping(req)


def _stop(req: Request) -> dict[str, Any]:
    req.host.request_stop(f"stop via the control channel (pid {req.peer.pid})")
    return _ping(req)


#: The commands every servicehost service answers. Read-only; extend by passing a new mapping.
COMMANDS: Mapping[str, Handler] = {
    "ping": _ping, "status": _status, "pause": _pause, "resume": _resume,
    "control": _control, "reload": _reload, "stop": _stop,
}


# -- the server -------------------------------------------------------------------------------------
class ControlServer:
    """Serves the control channel of ``host``: one daemon thread accepts, and each connection is
    served on a daemon thread of its own (at most ``max_connections`` at once).

    ``start()`` makes the runtime directory (0700, or 0750 with ``group_access``), removes a stale
    socket, binds, and starts serving; it raises StartupError when another live process serves
    the same name or the directory cannot be made safe. ``close()`` (or leaving the ``with`` block)
    stops serving and removes the socket and the ready marker. While the host is ready, the
    directory holds a ``ready`` marker with the pid (for health checks that cannot connect).
    ``peer_timeout`` bounds each whole request from its first byte, and the wait for one to begin.
    """

    def __init__(self, host: Host, path: Path, *, commands: Mapping[str, Handler] = COMMANDS,
                 allowed_uids: frozenset[int] | None = None, group_access: bool = False,
                 peer_timeout: float = PEER_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
        if not peer_timeout > 0:
            raise ValueError(f"control channel: peer_timeout must be > 0 seconds, got {peer_timeout!r}")
        if max_connections < 1:
            raise ValueError(f"control channel: max_connections must be >= 1, got {max_connections}")
        self.host = host
        self.path = Path(path)
        self.commands = dict(commands)
        self.allowed_uids = allowed_uids if allowed_uids is not None else frozenset({0, os.geteuid()})
        self.dir_mode = 0o750 if group_access else 0o700
        self.socket_mode = 0o660 if group_access else 0o600
        self.peer_timeout = peer_timeout
        self.max_connections = max_connections
        self.marker = self.path.parent / READY_MARKER
        self.serving_since = time.monotonic()
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        # Open connections → True while a request is being answered (close() waits for those and
        # ends the others at once). Guarded by _lock, with _threads and _refusing.
        self._lock = threading.Lock()
        self._open: dict[socket.socket, bool] = {}
        self._threads: set[threading.Thread] = set()
        self._refusing = False
        self._served = 0

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        return len(self._open)

    def start(self) -> None:
        if len(os.fsencode(self.path)) >= 108:  # sun_path is 108 bytes with its NUL
            raise StartupError(
                f"control socket path {self.path} is too long for a unix socket (max 107 bytes); "
                f"set {ENV_RUNTIME_DIR} to a shorter directory")
        base_is_tmp = self.path.parent.parent == Path(f"/tmp/servicehost-{os.geteuid()}")
        if base_is_tmp:  # /tmp is shared: the base must be ours and private, too
            _private_dir(self.path.parent.parent, 0o700, create_parents=False)
        _private_dir(self.path.parent, self.dir_mode, create_parents=not base_is_tmp)
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            os.chmod(self.path, self.socket_mode)
            listener.listen(8)
        except OSError as exc:
            listener.close()
            raise StartupError(f"control channel: cannot listen on {self.path}: {exc.strerror or exc}") from None
        self._listener = listener
        self._inode = os.stat(self.path).st_ino
        self.serving_since = time.monotonic()
        self._clear_marker()
        self.host.lifecycle.subscribe(self._on_move)
        if self.host.state in READY_STATES:
            self._write_marker()
        self._thread = threading.Thread(target=self._serve, name="servicehost-control", daemon=True)
        self._thread.start()
        logs.control_listening(log, self.path)

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise StartupError(f"{self.path} exists and is not a socket; remove it and start again")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(PEER_TIMEOUT)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)  # nobody listens: left behind by a process that was killed
            logs.control_stale_socket(log, self.path)
            return
        except OSError as exc:
            raise StartupError(f"control channel: cannot check {self.path}: {exc.strerror or exc}") from None
        else:
            other = Peer.of(probe)
            raise StartupError(
                f"another process (pid {other.pid}) already serves the control channel at {self.path}: "
                "the same service is running twice; stop the other one first")
        finally:
            probe.close()

    # -- accepting (one thread) ---------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._listener is not None
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self._listener, selectors.EVENT_READ)
                sel.register(self._wake_r, selectors.EVENT_READ)
                while not self._closing.is_set():
                    for key, _ in sel.select():
                        if key.fileobj is self._wake_r:
                            return
                        self._accept()
        except BaseException as exc:  # never die silently: the channel is how the service is reached
            logs.worker_crashed(log, "control channel", "servicehost-control", exc_info=exc)
            raise

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:  # e.g. the peer gave up already, or out of descriptors; keep serving
            logs.control_failed(log, "accept", exc)
            return
        with self._lock:
            busy = len(self._open) >= self.max_connections
            if not busy and not self._closing.is_set():
                self._refusing = False
                self._open[conn] = False
                self._served += 1
                thread = threading.Thread(target=self._serve_connection, args=(conn,),
                                          name=f"servicehost-control-{self._served}", daemon=True)
                self._threads.add(thread)
                thread.start()
                return
            first = busy and not self._refusing
            self._refusing = self._refusing or busy
        with conn:
            if first:
                logs.control_busy(log, self.max_connections)
            # Never blocks: a fresh socket's buffer holds this short reply. Closing with the peer's
            # request unread is fine on a unix socket: the peer still reads the reply first.
            reason = (f"busy: {self.max_connections} control connections are open; try again" if busy
                      else "the service is stopping")
            try:
                conn.setblocking(False)
                conn.send(encode_message({"ok": False, "error": reason}))
            except OSError:
                pass  # the peer is gone already

    # -- one connection (its own thread) ---------------------------------------------------------------
    def _serve_connection(self, conn: socket.socket) -> None:
        peer: Peer | None = None
        try:
            conn.settimeout(self.peer_timeout)  # the wait for a request to begin
            peer = Peer.of(conn)
            if peer.uid not in self.allowed_uids:
                self._refuse_uid(conn, peer)
                return
            while not self._closing.is_set():
                try:
                    message = receive_message(conn, self.peer_timeout)
                except MessageError as exc:
                    logs.control_failed(log, f"a request from pid {peer.pid}", exc)
                    self._reply(conn, {"ok": False, "error": _with_close(exc)})
                    if isinstance(exc, FrameTooLarge):
                        return  # its body was not read: the framing is lost
                    continue
                except RequestTimeout:
                    self._reply(conn, {"ok": False, "error": (
                        f"request not complete within {self.peer_timeout:g}s of its first byte; "
                        "closing the connection")})
                    logs.control_failed(log, f"a request from pid {peer.pid}",
                                        f"not complete within {self.peer_timeout:g}s of its first byte")
                    return
                except TimeoutError:
                    return  # no request began within peer_timeout: an idle connection, closed quietly
                if message is None:
                    return
                with self._lock:  # close() now waits for this answer instead of cutting it off
                    stopping = self._closing.is_set()
                    self._open[conn] = True
                reply = {"ok": False, "error": "the service is stopping"} if stopping else self._answer(message, peer)
                self._reply(conn, reply, answering=True)
        except (OSError, ValueError) as exc:  # a broken peer: drop it, keep serving the others
            if not self._closing.is_set():
                who = f"pid {peer.pid}" if peer else "a peer"
                logs.control_failed(log, f"a request from {who}", exc)
        except BaseException as exc:  # never die silently (and never take the channel with it)
            logs.worker_crashed(log, "control channel", threading.current_thread().name, exc_info=exc)
        finally:
            with self._lock:
                self._open.pop(conn, None)
                self._threads.discard(threading.current_thread())
            conn.close()

    def _reply(self, conn: socket.socket, reply: Mapping[str, Any], *, answering: bool = False) -> None:
        try:
            send_message(conn, reply, deadline=time.monotonic() + self.peer_timeout)
        finally:
            if answering:
                with self._lock:
                    if conn in self._open:
                        self._open[conn] = False

    def _refuse_uid(self, conn: socket.socket, peer: Peer) -> None:
        logs.control_refused(log, peer.pid, peer.uid, os.geteuid())
        # Read its request first, so the refusal is the answer to it.
        try:
            receive_message(conn, self.peer_timeout)
        except (MessageError, TimeoutError):
            pass
        self._reply(conn, {"ok": False, "error": (
            f"uid {peer.uid} may not control this service: only root and uid {os.geteuid()} may")})

    def _answer(self, message: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """The reply to one request. Never raises (Exception): an error becomes the reply."""
        try:
            return self._run(message, peer)
        except Exception as exc:  # noqa: BLE001 - one request's failure is its own reply, never the channel's
            logs.control_failed(log, "a request", exc)
            return {"ok": False, "error": f"internal error: {exc.__class__.__name__}: {exc}"}

    def _run(self, message: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        name = message.get("command")
        handler = self.commands.get(name) if isinstance(name, str) else None
        if handler is None or not isinstance(name, str):
            return {"ok": False, "error": f"unknown command {name!r}; known: {', '.join(sorted(self.commands))}"}
        args = message.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return {"ok": False, "error": "args must be a JSON object"}
        logs.control_command(log, name, peer.pid, peer.uid)
        try:
            result = handler(Request(self.host, name, args, peer, self.serving_since))
        except Exception as exc:  # a hook logged its own traceback; the peer gets the reason
            reason = str(exc) if type(exc) is ValueError else f"{exc.__class__.__name__}: {exc}"
            logs.control_failed(log, name, reason)
            return {"ok": False, "error": reason}
        reply = {"ok": True, "result": result}
        try:
            encode_message(reply)
        except (TypeError, ValueError) as exc:  # not JSON, or too big: the peer must still get a reply
            logs.control_failed(log, name, f"its result cannot be sent: {exc}")
            return {"ok": False, "error": f"{name}: its result cannot be sent: {exc}"}
        return reply

    # -- the ready marker ---------------------------------------------------------------------------
    def _on_move(self, old: HostState, new: HostState) -> None:
        if new is HostState.RUNNING and old is HostState.STARTING:
            self._write_marker()
        elif new not in READY_STATES:
            self._clear_marker()

    def _write_marker(self) -> None:
        tmp = self.marker.with_name(f".{READY_MARKER}.{os.getpid()}")
        try:
            tmp.write_text(f"{os.getpid()}\n")
            os.replace(tmp, self.marker)
        except OSError as exc:  # the channel still answers "ready"; the marker is a convenience
            logs.control_marker_failed(log, "writing", self.marker, exc)

    def _clear_marker(self) -> None:
        try:
            os.unlink(self.marker)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logs.control_marker_failed(log, "removing", self.marker, exc)

    # -- closing ------------------------------------------------------------------------------------
    def close(self, timeout: float = PEER_TIMEOUT * 2) -> None:
        """Stop serving, remove the socket. Connections waiting for (or in the middle of
        receiving) a request are ended at once; answers being made get up to ``timeout``."""
        deadline = Deadline.after(timeout)
        self._closing.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # already closed
        if self._thread is not None:
            self._thread.join(deadline.remaining())
        with self._lock:
            for conn, answering in self._open.items():
                if not answering:
                    try:  # wakes its thread from recv() with EOF; it closes the socket
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # the peer is gone already
            threads = [t for t in self._threads if t is not threading.current_thread()]
        for thread in threads:
            thread.join(deadline.remaining())
        if self._listener is not None:
            self._listener.close()
            try:  # only our own socket: a newer instance may have replaced it
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._listener = None
        self._clear_marker()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_close(exc: MessageError) -> str:
    return f"{exc}; closing the connection" if isinstance(exc, FrameTooLarge) else str(exc)


# -- the client -------------------------------------------------------------------------------------
class ControlClient:
    """Sends requests to a service's control channel. Each call blocks at most ``timeout`` seconds
    in all (connecting, sending and receiving together, however slowly the answer comes).

    ``server_uids`` (optional): the uids the serving process may have; anything else is refused
    before a request is sent (so a socket put there by someone else is never trusted).
    """

    def __init__(self, path: Path, *, timeout: float = 10.0, server_uids: frozenset[int] | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.server_uids = server_uids

    def call(self, command: str, **args: Any) -> Any:
        """Run ``command`` in the service; its result. ControlChannelError says what went wrong."""
        request = {"command": command, "args": args}
        try:
            encode_message(request)
        except ValueError as exc:  # too big: say so before connecting
            raise ControlChannelError(f"{command}: {exc}") from None
        deadline = time.monotonic() + self.timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError):
                raise ControlUnavailable(
                    f"no service answers at {self.path}: it is not running, or not ready to listen yet "
                    "(see: servicehost status)") from None
            except PermissionError:
                raise ControlChannelError(
                    f"not allowed to reach {self.path}: run this as root or as the service's user") from None
            except OSError as exc:
                raise ControlUnavailable(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
            if self.server_uids is not None:
                server = Peer.of(sock)
                if server.uid not in self.server_uids:
                    raise ControlChannelError(
                        f"{self.path} is served by uid {server.uid}, not by the service's account; "
                        "not sending anything to it: remove the socket and restart the service")
            try:
                try:
                    send_message(sock, request, deadline=deadline)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused at once (e.g. busy): the reason may be waiting to be read
                sock.settimeout(_remaining(deadline))
                reply = receive_message(sock, deadline=deadline)
            except TimeoutError:
                raise ControlChannelError(
                    f"{command}: no answer from {self.path} within {self.timeout:g}s "
                    "(a hook may be blocking; see the service's log)") from None
            except MessageError as exc:
                raise ControlChannelError(f"{command}: {self.path} answered with something else than a "
                                          f"control message: {exc}") from None
            except (OSError, ValueError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (None, errno.ECONNRESET, errno.EPIPE):
                    raise ControlChannelError(f"{command}: {self.path}: {exc.strerror or exc}") from None
                raise ControlChannelError(f"{command}: the service closed the connection ({exc})") from None
        finally:
            sock.close()
        if reply is None:
            raise ControlChannelError(f"{command}: the service closed the connection without answering")
        if not reply.get("ok"):
            raise ControlChannelError(f"{command}: {reply.get('error', 'refused')}")
        return reply.get("result")


def status_fields(answer: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~servicehost.platforms.base.ServiceStatus` fields from the channel's answer to
    ``status`` (or ``ping``, which lacks the summary and counters): state, sub_state (the host's
    own state), ready, status_line, counters."""
    host_state = str(answer.get("state", ""))
    counters = answer.get("counters")
    return {
        "state": STATUS_STATES.get(host_state, "unknown"),
        "sub_state": host_state or None,
        "ready": bool(answer.get("ready")),
        "status_line": answer.get("status_line"),
        "counters": counters if isinstance(counters, list) else None,
    }


def foreground_status(name: str, env: Mapping[str, str] | None = None,
                      timeout: float = STATUS_TIMEOUT) -> ServiceStatus | None:
    """The status of a service that no manager has but that answers on its control channel by
    ``name`` (a ``servicehost run``/``debug`` in a terminal, serving at :func:`socket_path`); None
    when nothing answers there. Blocks at most ``timeout`` seconds."""
    from .base import ServiceStatus

    if not sys.platform.startswith("linux"):
        return None  # only Linux runs serve a channel (ForegroundPlatform.run)
    try:
        path = socket_path(name, env)
    except UsageError:
        return None  # not a name a channel can have
    try:
        answer = ControlClient(path, timeout=timeout).call("status")
    except ControlChannelError:
        return None
    if not isinstance(answer, dict):
        return None
    pid, uptime = answer.get("pid"), answer.get("uptime")
    return ServiceStatus(
        name, "foreground", pid=pid if isinstance(pid, int) else None,
        uptime=float(uptime) if isinstance(uptime, (int, float)) else None,
        detail={"control channel": str(path)}, **status_fields(answer))


@contextlib.contextmanager
def serving(host: Host, path: Path | None = None) -> Iterator[ControlServer | None]:
    """Serve ``host``'s control channel (at ``path``, default :func:`socket_path` of its name)
    while the block runs, where it is optional (a run in a terminal): if it cannot be served (the
    same name runs already, an unsafe directory), that is logged (event 5222) and the block runs
    without it (None)."""
    server = open_channel(host, path)
    try:
        yield server
    finally:
        if server is not None:
            server.close()


def open_channel(host: Host, path: Path | None = None) -> ControlServer | None:
    """Start serving ``host``'s control channel where it is optional; None (logged, event 5222)
    when it cannot be served. The caller closes it."""
    try:
        server = ControlServer(host, path if path is not None else socket_path(host.name))
        server.start()
    except (UsageError, StartupError, OSError) as exc:
        logs.control_unavailable(log, exc)
        return None
    return server


class ChannelOperations:
    """pause/resume/control/reload of a running service through its control channel: the part of
    a :class:`~servicehost.platforms.base.Manager` every Linux manager shares. A manager provides
    ``name`` and ``_client(service)``, and may override ``_check(service)`` (e.g. "installed?")."""

    name: str

    def _client(self, service: str) -> ControlClient:
        raise NotImplementedError

    def _check(self, service: str) -> None:
        """Raise if ``service`` cannot be asked anything (default: nothing to check)."""

    def _ask(self, service: str, command: str, **args: Any) -> None:
        self._check(service)
        try:
            self._client(service).call(command, **args)
        except ControlUnavailable as exc:
            raise ControlUnavailable(
                f"{service} is not running under {self.name}, or not ready yet: {exc}") from None

    def pause(self, name: str) -> None:
        self._ask(name, "pause")

    def resume(self, name: str) -> None:
        self._ask(name, "resume")

    def control(self, name: str, code: int) -> None:
        self._ask(name, "control", code=code)

    def reload(self, name: str) -> None:
        """The services' ``reload()``; errors come back to the caller (a signal cannot report them)."""
        self._ask(name, "reload")
