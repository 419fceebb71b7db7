"""The control channel: pause, continue, control CODE, reload, stop and status of a running
service on Linux, where the service managers (systemd, supervisord) have no such verbs. A run in a
terminal serves it too (:func:`serving`), so ``servicehost status NAME`` finds it
(:func:`~servicehost.platforms.control_client.foreground_status`).

The service (its platform's ``run``) serves it with :class:`ControlServer`; a Manager talks to it
with :class:`~servicehost.platforms.control_client.ControlClient` (the client half, a module of its
own: a service never loads it). The socket's path is derived from the name the manager knows the
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
import errno
import logging
import os
import re
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .. import logs
from ..errors import IllegalTransition, StartupError, UsageError, describe_error, error_message
from ..host import Host
from .. import lifecycle
from ..lifecycle import HostState
from ..stopping import Deadline

log = logging.getLogger("servicehost.platforms.control")

ENV_RUNTIME_DIR = "SERVICEHOST_RUNTIME_DIR"
SOCKET_NAME = "control.sock"
READY_MARKER = "ready"
#: Largest request (and any message a server reads), in bytes of JSON.
MAX_MESSAGE = 64 * 1024
#: Largest reply a client reads (a thread dump of many threads is bigger than any request).
MAX_REPLY = 1024 * 1024
#: How deep a message's JSON may nest (requests and replies are flat; the stdlib parser recurses).
MAX_DEPTH = 32
#: Seconds a peer has to send one whole request, from its first byte, and to begin one.
PEER_TIMEOUT = 5.0
#: Control connections served at once (each on its own thread); one more is refused with a reply.
MAX_CONNECTIONS = 16
#: The length header: the body's size, 4 bytes big-endian (unsigned).
HEADER_BYTES = 4
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[][{}]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
#: Host states in which the service counts as ready (it has reached RUNNING and not begun stopping).
READY_STATES = lifecycle.READY_STATES
#: A host state (what the channel answers) → the state ``servicehost status`` shows. A host that
#: answers is alive: stopping, stopped and failed mean it is on its way out.
STATUS_STATES: Mapping[str, str] = {
    HostState.CREATED.value: "starting", HostState.STARTING.value: "starting", HostState.RUNNING.value: "running",
    HostState.DRAINING.value: "draining",
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
def encode_message(message: Mapping[str, Any], limit: int = MAX_MESSAGE) -> bytes:
    """The frame for ``message``: length header and JSON body (ValueError if over ``limit``)."""
    import json  # here, and in parse_message: a service nobody asks never loads it

    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > limit:
        raise ValueError(f"control message of {len(data)} bytes is over the {limit}-byte limit")
    return len(data).to_bytes(HEADER_BYTES, "big") + data


def send_message(sock: socket.socket, message: Mapping[str, Any], *, deadline: float | None = None,
                 limit: int = MAX_MESSAGE) -> None:
    """Send one message, all of it before ``deadline`` (a ``time.monotonic()`` value; None: the
    socket's own timeout for each write). TimeoutError when the peer does not read it in time.
    ``sock`` is a socket, or any connection with the same ``send``/``settimeout``/``gettimeout``
    (the Windows named pipe's)."""
    data = memoryview(encode_message(message, limit))
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
                    deadline: float | None = None, limit: int = MAX_MESSAGE) -> dict[str, Any] | None:
    """The next message, or None when the peer closed the connection between messages.

    Waiting for its first byte takes as long as the socket's timeout allows (TimeoutError). From
    that byte on, the whole message must arrive within ``timeout`` seconds (None: the socket's
    timeout) and before ``deadline`` (``time.monotonic()``), however slowly it drips: else
    :class:`RequestTimeout`. :class:`FrameTooLarge` (over ``limit``) is raised from the length header alone;
    :class:`MessageError` for a body that is not a JSON object within :data:`MAX_DEPTH`.
    """
    first = sock.recv(HEADER_BYTES)
    if not first:
        return None
    if timeout is None:
        timeout = sock.gettimeout()
    if timeout is not None:
        by = time.monotonic() + timeout
        deadline = by if deadline is None else min(deadline, by)
    head = first + _receive_exactly(sock, HEADER_BYTES - len(first), deadline)
    size = int.from_bytes(head, "big")
    if size > limit:
        raise FrameTooLarge(f"control message of {size} bytes is over the {limit}-byte limit")
    return parse_message(_receive_exactly(sock, size, deadline))


def parse_message(body: bytes) -> dict[str, Any]:
    """One message's body → the JSON object it holds; MessageError saying what is wrong with it.
    The nesting is measured first, without recursion, so no input can exhaust the stack."""
    import json

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


# -- who may ask what ---------------------------------------------------------------------------------
#: ``SO_PEERGROUPS`` (Linux 4.13+; the socket module lacks the name): the peer's supplementary
#: groups, as the kernel recorded them when it connected.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
READ, WRITE = "read", "write"
#: The commands that only show the service (a reader may run them); every other command changes it.
READ_COMMANDS = frozenset({"ping", "status", "threads", "config"})


class Peer(NamedTuple):
    """Who is on the other end: on a unix socket, its credentials (``SO_PEERCRED``) and
    supplementary groups (``SO_PEERGROUPS``); on the Windows named pipe, its pid and its token's
    user SID (``account``) and group SIDs (``sids``), uid and gid -1."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    account: str = ""
    sids: tuple[str, ...] = ()

    @classmethod
    def of(cls, sock: socket.socket) -> Peer:
        import struct  # per connection, not at import: an idle service never loads it

        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
        return cls(pid, uid, gid, _peer_groups(sock))

    @property
    def who(self) -> str:
        """The peer as a log line names it: ``uid 1000``, or its account's SID."""
        return self.account if self.uid < 0 else f"uid {self.uid}"


def _peer_groups(sock: socket.socket) -> tuple[int, ...]:
    """The peer's supplementary groups; () where the kernel cannot say (then only its primary
    group counts)."""
    size = 64
    while True:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * size)
        except OSError as exc:
            if exc.errno == errno.ERANGE and size < 65536:
                size *= 8  # more groups than the buffer holds: ask again with room for them
                continue
            return ()
        import struct

        return struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4])


class Permissions:
    """Who may use a unix-socket channel: root and the service's own uid (``writers``) run every
    command; members of ``group`` (the ``control_group`` setting; its gid) only
    :data:`READ_COMMANDS`; anyone else nothing. The Windows pipe has its own
    (``windows/control_pipe.py``), with the same three answers."""

    def __init__(self, writers: frozenset[int] | None = None, group: int | None = None, group_name: str = "") -> None:
        self.writers = writers if writers is not None else frozenset({0, os.geteuid()})
        self.group = group
        self.group_name = group_name or (str(group) if group is not None else "")

    def access(self, peer: Peer) -> str | None:
        """WRITE, READ or None for ``peer``."""
        if peer.uid in self.writers:
            return WRITE
        if self.group is not None and (peer.gid == self.group or self.group in peer.groups):
            return READ
        return None

    def _owners(self) -> str:
        others = sorted(self.writers - {0}) or [os.geteuid()]
        return "only root" + "".join(f" and uid {uid}" for uid in others) + " may"

    def refusal(self, peer: Peer) -> str:
        """What a peer that may do nothing is told (and which group would let it read)."""
        text = f"{peer.who} may not control this service: {self._owners()}"
        if self.group is not None:
            text += f"; members of group {self.group_name} may read its status, threads and config (join that group)"
        return text

    def write_refusal(self, peer: Peer, command: str) -> str:
        """What a reader asking for a command that changes the service is told."""
        return (f"{command}: {peer.who} may read this service (group {self.group_name}) but not change it: "
                f"{command} needs root or the service's own uid ({self._owners()})")


def resolve_group(text: str) -> tuple[int, str]:
    """``control_group`` (a group name, or a numeric gid) → (gid, name); StartupError when this
    machine has no such group."""
    import grp

    try:
        entry = grp.getgrgid(int(text)) if text.isdigit() else grp.getgrnam(text)
    except KeyError:
        if text.isdigit():
            return int(text), text  # a gid without a name: still a gid the kernel checks
        raise StartupError(
            f"control_group {text!r}: this machine has no such group; create it (groupadd {text}) "
            "or change the setting") from None
    return entry.gr_gid, entry.gr_name


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
    """The status document (``ops/status.py``): ping's keys, then uptime, health, since when, the
    summary line, every component's counters, the last error, versions."""
    from ..ops.status import service_status

    return service_status(req.host, uptime=time.monotonic() - req.serving_since)


def _pause(req: Request) -> dict[str, Any]:
    try:
        req.host.pause()
    except IllegalTransition:
        raise ValueError(f"the service is {req.host.state.value}, not running") from None
    return _ping(req)


def _resume(req: Request) -> dict[str, Any]:
    """Back to running, from a pause or a drain."""
    try:
        req.host.resume()
    except IllegalTransition:
        raise ValueError(f"the service is {req.host.state.value}, not paused or draining") from None
    return _ping(req)


#: The longest ``drain`` may wait for the work to finish before it answers (seconds).
MAX_DRAIN_WAIT = 86400.0


def _drain(req: Request) -> dict[str, Any]:
    """Hold intake and let queued and running work finish (``lifecycle.py``: DRAINING); a drain
    under way is kept. ``wait`` (seconds): answer once nothing is queued or running, or when it
    has passed. ``drained`` says which; ``queued`` and ``running`` what is left now."""
    wait = req.args.get("wait", 0)
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not 0 <= wait <= MAX_DRAIN_WAIT:
        raise ValueError(f"drain: wait must be 0-{MAX_DRAIN_WAIT:g} seconds, got {wait!r}")
    host = req.host
    try:
        host.drain()
    except IllegalTransition:  # from DRAINING too: a drain under way (this one's, or another's) is kept
        state = host.state
        if state is not HostState.DRAINING:
            raise ValueError(f"the service is {state.value}, not running") from None
    drained = host.wait_drained(wait) if wait else host.state is HostState.DRAINING and host.idle()
    counters = host.counters()
    return {**_ping(req), "drained": drained, "queued": sum(c.queue_depth for c in counters),
            "running": sum(c.in_flight for c in counters)}


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


def _threads(req: Request) -> dict[str, Any]:
    """Every thread's stack (``ops/threads.py``), as many frames a thread as fit in one reply."""
    from ..ops.threads import thread_dump

    return thread_dump(_fits_in_reply)


def _fits_in_reply(result: Any) -> bool:
    try:
        encode_message({"ok": True, "result": result}, MAX_REPLY)
    except ValueError:
        return False
    return True


def _config(req: Request) -> dict[str, Any]:
    """The effective settings, secrets redacted (``ops/settings.py``)."""
    from ..ops.settings import effective_settings

    return {"settings": effective_settings(req.host)}


def _loglevel(req: Request) -> dict[str, Any]:
    """Set a logger's level (``ops/loglevel.py``); ``for`` (seconds): then back by itself."""
    from ..ops.loglevel import LEVELS

    return LEVELS.set(req.args.get("logger", ""), req.args.get("level", ""), req.args.get("for"))


#: The commands every servicehost service answers. Read-only; extend by passing a new mapping.
COMMANDS: Mapping[str, Handler] = {
    "ping": _ping, "status": _status, "pause": _pause, "resume": _resume, "drain": _drain,
    "control": _control, "reload": _reload, "stop": _stop,
    "threads": _threads, "config": _config, "loglevel": _loglevel,
}


# -- serving connections, whatever the transport ------------------------------------------------------
class ChannelServer:
    """What every transport's server shares (the unix socket's :class:`ControlServer`, the Windows
    named pipe's ``PipeServer``): each connection on a daemon thread of its own (at most
    ``max_connections`` at once; one more gets a "busy" reply), who may ask what
    (``permissions``), the framing, the command table, and closing.

    A transport starts its own accepting thread, hands each new connection to :meth:`_admit`, and
    provides :meth:`_identify` (the peer), :meth:`_send_now` (a short reply that never blocks),
    :meth:`_interrupt` (wake a thread blocked reading) and :meth:`_stop_accepting`. A connection
    is anything with a socket's ``recv``/``send``/``settimeout``/``gettimeout``/``close``.
    """

    #: What the log calls this channel's listening place.
    where: str = ""

    def __init__(self, host: Host, *, commands: Mapping[str, Handler] = COMMANDS, permissions: Any = None,
                 peer_timeout: float = PEER_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
        if not peer_timeout > 0:
            raise ValueError(f"control channel: peer_timeout must be > 0 seconds, got {peer_timeout!r}")
        if max_connections < 1:
            raise ValueError(f"control channel: max_connections must be >= 1, got {max_connections}")
        self.host = host
        self.commands = dict(commands)
        self.permissions = permissions
        self.peer_timeout = peer_timeout
        self.max_connections = max_connections
        self.serving_since = time.monotonic()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        # Open connections → True while a request is being answered (close() waits for those and
        # ends the others at once). Guarded by _lock, with _threads and _refusing.
        self._lock = threading.Lock()
        self._open: dict[Any, bool] = {}
        self._threads: set[threading.Thread] = set()
        self._refusing = False
        self._served = 0

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        return len(self._open)

    # -- the transport's part -------------------------------------------------------------------------
    def _identify(self, conn: Any) -> Peer:
        raise NotImplementedError

    def _send_now(self, conn: Any, reply: Mapping[str, Any]) -> None:
        """Send a short reply on a fresh connection without ever blocking (then it is closed)."""
        raise NotImplementedError

    def _interrupt(self, conn: Any) -> None:
        """Wake the thread blocked reading ``conn`` (it then sees the end of the connection)."""
        raise NotImplementedError

    def _stop_accepting(self, deadline: Deadline) -> None:
        """End the accepting thread (by ``deadline``)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the transport holds once every connection is done (the socket file...)."""

    # -- accepting ------------------------------------------------------------------------------------
    def _admit(self, conn: Any) -> None:
        """Serve ``conn`` on a thread of its own, or refuse it with a reply (busy, stopping)."""
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
        try:
            if first:
                logs.control_busy(log, self.max_connections)
            reason = (f"busy: {self.max_connections} control connections are open; try again" if busy
                      else "the service is stopping")
            try:
                self._send_now(conn, {"ok": False, "error": reason})
            except OSError:
                pass  # the peer is gone already
        finally:
            conn.close()

    # -- one connection (its own thread) ---------------------------------------------------------------
    def _serve_connection(self, conn: Any) -> None:
        peer: Peer | None = None
        try:
            conn.settimeout(self.peer_timeout)  # the wait for a request to begin
            peer = self._identify(conn)
            access = self.permissions.access(peer)
            if access is None:
                self._refuse(conn, peer)
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
                reply = ({"ok": False, "error": "the service is stopping"} if stopping
                         else self._answer(message, peer, access))
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

    def _reply(self, conn: Any, reply: Mapping[str, Any], *, answering: bool = False) -> None:
        try:
            send_message(conn, reply, deadline=time.monotonic() + self.peer_timeout, limit=MAX_REPLY)
        finally:
            if answering:
                with self._lock:
                    if conn in self._open:
                        self._open[conn] = False

    def _refuse(self, conn: Any, peer: Peer) -> None:
        logs.control_refused(log, peer.pid, peer.who, self.permissions.refusal(peer))
        # Read its request first, so the refusal is the answer to it.
        try:
            receive_message(conn, self.peer_timeout)
        except (MessageError, TimeoutError):
            pass
        self._reply(conn, {"ok": False, "error": self.permissions.refusal(peer)})

    def _answer(self, message: Mapping[str, Any], peer: Peer, access: str = WRITE) -> dict[str, Any]:
        """The reply to one request. Never raises (Exception): an error becomes the reply."""
        try:
            return self._run(message, peer, access)
        except Exception as exc:  # noqa: BLE001 - one request's failure is its own reply, never the channel's
            logs.control_failed(log, "a request", exc)
            return {"ok": False, "error": f"internal error: {describe_error(exc, limit=2000)}"}

    def _run(self, message: Mapping[str, Any], peer: Peer, access: str = WRITE) -> dict[str, Any]:
        name = message.get("command")
        handler = self.commands.get(name) if isinstance(name, str) else None
        if handler is None or not isinstance(name, str):
            return {"ok": False, "error": f"unknown command {name!r}; known: {', '.join(sorted(self.commands))}"}
        if access != WRITE and name not in READ_COMMANDS:
            refusal = self.permissions.write_refusal(peer, name)
            logs.control_write_refused(log, name, peer.pid, peer.who)
            return {"ok": False, "error": refusal}
        args = message.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return {"ok": False, "error": "args must be a JSON object"}
        logs.control_command(log, name, peer.pid, peer.who)
        try:
            result = handler(Request(self.host, name, args, peer, self.serving_since))
        except Exception as exc:  # a hook logged its own traceback; the peer gets the reason
            reason = error_message(exc) if type(exc) is ValueError else describe_error(exc, limit=2000)
            logs.control_failed(log, name, reason)
            return {"ok": False, "error": reason}
        reply = {"ok": True, "result": result}
        try:
            encode_message(reply, MAX_REPLY)
        except (TypeError, ValueError) as exc:  # not JSON, or too big: the peer must still get a reply
            logs.control_failed(log, name, f"its result cannot be sent: {exc}")
            return {"ok": False, "error": f"{name}: its result cannot be sent: {exc}"}
        return reply

    # -- closing ------------------------------------------------------------------------------------
    def close(self, timeout: float = PEER_TIMEOUT * 2) -> None:
        """Stop serving. Connections waiting for (or in the middle of receiving) a request are
        ended at once; answers being made get up to ``timeout``."""
        deadline = Deadline.after(timeout)
        self._closing.set()
        self._stop_accepting(deadline)
        with self._lock:
            for conn, answering in self._open.items():
                if not answering:
                    try:  # wakes its thread from its read with EOF; it closes the connection
                        self._interrupt(conn)
                    except OSError:
                        pass  # the peer is gone already
            threads = [t for t in self._threads if t is not threading.current_thread()]
        for thread in threads:
            thread.join(deadline.remaining())
        self._release()

    def __enter__(self) -> ChannelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        raise NotImplementedError


# -- the unix socket ----------------------------------------------------------------------------------
class ControlServer(ChannelServer):
    """Serves the control channel of ``host`` on a unix socket: one daemon thread accepts, and
    each connection is served on a daemon thread of its own (:class:`ChannelServer`).

    ``start()`` makes the runtime directory (0700; 0750 with ``group_access`` or a control group),
    removes a stale socket, binds, and starts serving; it raises StartupError when another live
    process serves the same name or the directory cannot be made safe. ``close()`` (or leaving the
    ``with`` block) stops serving and removes the socket and the ready marker. While the host is
    ready, the directory holds a ``ready`` marker with the pid (for health checks that cannot
    connect). ``peer_timeout`` bounds each whole request from its first byte, and the wait for one
    to begin.

    Who may ask what: root and ``allowed_uids`` (default: root and this process's uid) everything;
    members of ``group`` (default: the host's ``control_group`` setting; a name or a gid) the read
    commands. With a group, the directory and the socket belong to it (0750, 0660), so its members
    can reach the socket; the server checks every peer's credentials all the same.
    """

    def __init__(self, host: Host, path: Path, *, commands: Mapping[str, Handler] = COMMANDS,
                 allowed_uids: frozenset[int] | None = None, group_access: bool = False,
                 group: str | None = None,
                 peer_timeout: float = PEER_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(host, commands=commands, permissions=Permissions(allowed_uids),
                         peer_timeout=peer_timeout, max_connections=max_connections)
        self.path = Path(path)
        self.where = str(self.path)
        self.group = group if group is not None else str(getattr(host.config, "control_group", "") or "")
        self.group_access = group_access or bool(self.group)
        self.dir_mode = 0o750 if self.group_access else 0o700
        self.socket_mode = 0o660 if self.group_access else 0o600
        self.marker = self.path.parent / READY_MARKER
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()

    def start(self) -> None:
        if len(os.fsencode(self.path)) >= 108:  # sun_path is 108 bytes with its NUL
            raise StartupError(
                f"control socket path {self.path} is too long for a unix socket (max 107 bytes); "
                f"set {ENV_RUNTIME_DIR} to a shorter directory")
        gid = None
        if self.group:
            gid, name = resolve_group(self.group)
            self.permissions = Permissions(self.permissions.writers, gid, name)
        base_is_tmp = self.path.parent.parent == Path(f"/tmp/servicehost-{os.geteuid()}")
        if base_is_tmp:  # /tmp is shared: the base must be ours and private, too
            _private_dir(self.path.parent.parent, 0o700, create_parents=False)
        _private_dir(self.path.parent, self.dir_mode, create_parents=not base_is_tmp)
        if gid is not None:
            gid = self._give_group(self.path.parent, gid)
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            if gid is not None:  # before the mode lets the group in: never a moment it is anyone else's
                os.chown(self.path, -1, gid)
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

    def _give_group(self, directory: Path, gid: int) -> int | None:
        """Hand the runtime directory to the control group (the socket follows once bound). A
        process that may not (neither root nor a member of the group) serves its own uid only,
        and says so; so does a group that cannot reach the directory (a private parent)."""
        name = self.permissions.group_name
        try:
            os.chown(directory, -1, gid)
        except OSError as exc:
            logs.control_group_unreachable(log, name, f"{directory} cannot be given to it ({exc.strerror or exc}): "
                                           "make the service's account a member of the group")
            self.permissions = Permissions(self.permissions.writers)
            return None
        for parent in directory.parents:
            st = os.stat(parent)
            if not (st.st_mode & 0o001 or (st.st_mode & 0o010 and st.st_gid == gid)):
                logs.control_group_unreachable(
                    log, name, f"{parent} is not searchable by it; serve the channel under a directory it can "
                    f"reach ({ENV_RUNTIME_DIR})")
                break
        return gid

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
        self._admit(conn)

    def _identify(self, conn: socket.socket) -> Peer:
        return Peer.of(conn)

    def _send_now(self, conn: socket.socket, reply: Mapping[str, Any]) -> None:
        # Never blocks: a fresh socket's buffer holds this short reply. Closing with the peer's
        # request unread is fine on a unix socket: the peer still reads the reply first.
        conn.setblocking(False)
        conn.send(encode_message(reply))

    def _interrupt(self, conn: socket.socket) -> None:
        conn.shutdown(socket.SHUT_RDWR)

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
        super().close(timeout)

    def _stop_accepting(self, deadline: Deadline) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # already closed
        if self._thread is not None:
            self._thread.join(deadline.remaining())

    def _release(self) -> None:
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


def _with_close(exc: MessageError) -> str:
    return f"{exc}; closing the connection" if isinstance(exc, FrameTooLarge) else str(exc)


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
