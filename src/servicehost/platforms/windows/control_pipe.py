r"""The control channel on Windows: the named pipe ``\\.\pipe\servicehost-<name>``.

The same commands, framing and bounds as the unix socket (``platforms/control.py``: one
implementation of the commands, two transports); only the transport and who may ask differ.

Who may connect is the pipe's own security descriptor, explicit, never the default DACL (which
lets Everyone read): :func:`pipe_sddl` — protected (no inherited ACEs), full access for SYSTEM and
Administrators, read/write for the service's own SID (``NT SERVICE\<name>``) and the account it runs
as, read/write for the ``control_group`` (its members must write to send a request). The first
instance is created with ``FILE_FLAG_FIRST_PIPE_INSTANCE`` (a process that created the name first
makes the start fail instead of listening beside it) and every instance with
``PIPE_REJECT_REMOTE_CLIENTS``. What a peer may do is then decided per peer, as on the unix socket
(:class:`PipePermissions`): SYSTEM, Administrators, the service's SID and account run every
command; members of the control group only the read commands.

Served under the SCM (``session.py`` starts it with the host, on threads of its own, and closes it
after the host stops); asked by ``WindowsManager.ask`` (:class:`PipeClient`), which checks that the
process serving the pipe is the service's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ... import logs
from ...errors import StartupError
from ...host import Host
from ...stopping import Deadline
from ..control import (
    COMMANDS,
    MAX_CONNECTIONS,
    PEER_TIMEOUT,
    READ,
    WRITE,
    ChannelServer,
    ControlChannelError,
    ControlUnavailable,
    Handler,
    Peer,
    check_name,
    encode_message,
)
from ..control_client import ControlClient
from .pywin32 import import_pywin32
from .security import ADMINISTRATORS_SID as ADMINISTRATORS
from .security import SYSTEM_SID as SYSTEM
from .security import virtual_account_sid

log = logging.getLogger("servicehost.platforms.windows")

PIPE_PREFIX = "\\\\.\\pipe\\servicehost-"
# Win32 values pywin32 does not name everywhere.
FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
PIPE_REJECT_REMOTE_CLIENTS = 0x00000008
SECURITY_SQOS_PRESENT = 0x00100000
SECURITY_IDENTIFICATION = 0x00010000
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
SE_GROUP_ENABLED, SE_GROUP_USE_FOR_DENY_ONLY = 0x4, 0x10
ERROR_FILE_NOT_FOUND, ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE = 2, 5, 109
ERROR_PIPE_BUSY, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED = 231, 232, 233
ERROR_MORE_DATA, ERROR_OPERATION_ABORTED, ERROR_IO_PENDING, ERROR_PIPE_CONNECTED = 234, 995, 997, 535
WAIT_TIMEOUT = 0x102
BUFFER = 65536


def pipe_name(name: str) -> str:
    r"""``\\.\pipe\servicehost-<name>``: the service's control pipe (the name checked as a socket's)."""
    return PIPE_PREFIX + check_name(name)


def pipe_sddl(writers: Iterable[str], readers: Iterable[str] = ()) -> str:
    """The pipe's security descriptor (SDDL): a protected DACL (``P``: nothing inherited) with full
    access for SYSTEM and Administrators and read/write (``GRGW``: connect, send a request, read
    the answer) for each of ``writers`` (the service's SID, its account) and ``readers`` (the
    control group), each SID once. Nothing else: no Everyone, no anonymous, no default DACL."""
    aces = ["(A;;GA;;;SY)", "(A;;GA;;;BA)"]
    seen = {SYSTEM, ADMINISTRATORS}
    for sid in [*writers, *readers]:
        if sid and sid not in seen:
            seen.add(sid)
            aces.append(f"(A;;GRGW;;;{sid})")
    return "D:P" + "".join(aces)


class PipePermissions:
    """Who may use the pipe, by SID: ``writers`` (SYSTEM, Administrators, the service's SID and
    account) every command; the ``group`` SID only the read commands; anyone else nothing (the
    DACL keeps them out already; this is the second check, as on the unix socket)."""

    def __init__(self, writers: Iterable[str], group: str | None = None, group_name: str = "") -> None:
        self.writers = frozenset({SYSTEM, ADMINISTRATORS, *writers})
        self.group = group
        self.group_name = group_name or (group or "")

    def access(self, peer: Peer) -> str | None:
        sids = {peer.account, *peer.sids}
        if sids & self.writers:
            return WRITE
        if self.group is not None and self.group in sids:
            return READ
        return None

    def refusal(self, peer: Peer) -> str:
        text = (f"{peer.who} may not control this service: only SYSTEM, Administrators and the service's own "
                "account may")
        if self.group is not None:
            text += f"; members of group {self.group_name} may read its status, threads and config (join that group)"
        return text

    def write_refusal(self, peer: Peer, command: str) -> str:
        return (f"{command}: {peer.who} may read this service (group {self.group_name}) but not change it: "
                f"{command} needs an Administrator, SYSTEM or the service's own account")


class _Win32:
    """The pywin32 modules the pipe uses, imported once, when a pipe is first made or opened."""

    def __init__(self) -> None:
        self.pipe = import_pywin32("win32pipe")
        self.file = import_pywin32("win32file")
        self.event = import_pywin32("win32event")
        self.security = import_pywin32("win32security")
        self.api = import_pywin32("win32api")
        self.types = import_pywin32("pywintypes")
        self.error = self.types.error


class PipeConnection:
    """One end of a connected pipe instance, with a socket's ``recv``/``send``/``sendall``/
    ``settimeout``/``gettimeout``/``close`` (what ``control.py``'s framing uses): overlapped I/O,
    so every read and write waits at most its timeout, and :meth:`interrupt` ends a read at once."""

    def __init__(self, w: _Win32, handle: Any, *, server: bool) -> None:
        self._w = w
        self.handle = handle
        self._server = server
        self._timeout: float | None = None
        self._cancel = w.event.CreateEvent(None, True, False, None)
        self._io = w.event.CreateEvent(None, True, False, None)
        self._closed = False

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def _wait(self, overlapped: Any) -> int:
        """Wait for ``overlapped`` (the timeout, or :meth:`interrupt`); bytes moved. TimeoutError;
        ConnectionResetError when interrupted."""
        w = self._w
        ms = w.event.INFINITE if self._timeout is None else max(0, int(self._timeout * 1000))
        which = w.event.WaitForMultipleObjects([overlapped.hEvent, self._cancel], False, ms)
        if which != w.event.WAIT_OBJECT_0:
            w.file.CancelIo(self.handle)
            try:  # the cancelled I/O must end before its buffer may go
                w.file.GetOverlappedResult(self.handle, overlapped, True)
            except w.error:
                pass
            if which == WAIT_TIMEOUT:
                raise TimeoutError("timed out")
            raise ConnectionResetError("the connection was closed")
        return int(w.file.GetOverlappedResult(self.handle, overlapped, False))

    def recv(self, size: int) -> bytes:
        w = self._w
        overlapped = w.types.OVERLAPPED()
        overlapped.hEvent = self._io
        w.event.ResetEvent(self._io)
        buffer = w.file.AllocateReadBuffer(min(size, BUFFER))
        try:
            w.file.ReadFile(self.handle, buffer, overlapped)
            got = self._wait(overlapped)
        except w.error as exc:
            if exc.winerror in (ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED, ERROR_NO_DATA,
                                ERROR_OPERATION_ABORTED):
                return b""  # the other end closed
            if exc.winerror == ERROR_MORE_DATA:
                return bytes(buffer)
            raise OSError(exc.winerror, exc.strerror) from None
        except ConnectionResetError:
            return b""
        return bytes(buffer[:got])

    def send(self, data: bytes | memoryview) -> int:
        w = self._w
        overlapped = w.types.OVERLAPPED()
        overlapped.hEvent = self._io
        w.event.ResetEvent(self._io)
        chunk = bytes(data[:BUFFER])
        try:
            w.file.WriteFile(self.handle, chunk, overlapped)
            return self._wait(overlapped)
        except w.error as exc:
            if exc.winerror in (ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED):
                raise BrokenPipeError(exc.winerror, exc.strerror) from None
            raise OSError(exc.winerror, exc.strerror) from None

    def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view):]

    def interrupt(self) -> None:
        """End a read waiting on this connection (it sees the end of the connection)."""
        self._w.event.SetEvent(self._cancel)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        w = self._w
        try:
            if self._server:
                try:
                    w.file.FlushFileBuffers(self.handle)  # the peer reads the last reply before the disconnect
                except w.error:
                    pass
                w.pipe.DisconnectNamedPipe(self.handle)
        except w.error:
            pass  # the peer is gone already
        finally:
            self.handle.Close()

    def __enter__(self) -> PipeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def token_sids(w: _Win32, token: Any) -> tuple[str, tuple[str, ...]]:
    """A token's user SID and its enabled group SIDs (a deny-only group, e.g. Administrators in a
    filtered UAC token, does not count)."""
    sec = w.security
    user = sec.ConvertSidToStringSid(sec.GetTokenInformation(token, sec.TokenUser)[0])
    groups = tuple(sec.ConvertSidToStringSid(sid) for sid, attributes in sec.GetTokenInformation(token, sec.TokenGroups)
                   if attributes & SE_GROUP_ENABLED and not attributes & SE_GROUP_USE_FOR_DENY_ONLY)
    return user, groups


def client_peer(w: _Win32, handle: Any) -> Peer:
    """Who is on the other end of a connected pipe instance: its pid, and the user and group SIDs
    of its process's token (an empty account when they cannot be read: such a peer may do nothing)."""
    pid = int(w.pipe.GetNamedPipeClientProcessId(handle))
    try:
        process = w.api.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        try:
            token = w.security.OpenProcessToken(process, w.security.TOKEN_QUERY)
            try:
                user, groups = token_sids(w, token)
            finally:
                token.Close()
        finally:
            process.Close()
    except w.error:
        return Peer(pid, -1, -1, account=f"pid {pid} (its account cannot be read)")
    return Peer(pid, -1, -1, account=user, sids=groups)


class PipeServer(ChannelServer):
    r"""Serves ``host``'s control channel on the named pipe ``name`` (``\\.\pipe\servicehost-…``):
    one thread waits for each next client, each connection is served on a thread of its own
    (:class:`~servicehost.platforms.control.ChannelServer`). ``writers``: the SIDs that may run
    every command besides SYSTEM and Administrators (the service's SID, its account's); ``group``:
    a group name whose members may read (default: the host's ``control_group``)."""

    def __init__(self, host: Host, name: str, *, writers: Sequence[str] = (), group: str | None = None,
                 commands: Mapping[str, Handler] = COMMANDS, peer_timeout: float = PEER_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(host, commands=commands, permissions=PipePermissions(writers),
                         peer_timeout=peer_timeout, max_connections=max_connections)
        self.name = name
        self.where = name
        self.writer_sids = tuple(writers)
        self.group = group if group is not None else str(getattr(host.config, "control_group", "") or "")
        self.sddl = ""
        self._w: _Win32 | None = None
        self._attributes: Any = None
        self._listening: Any = None
        self._stop_event: Any = None

    def start(self) -> None:
        w = self._w = _Win32()
        group_sid = None
        if self.group:
            try:
                sid, _, _ = w.security.LookupAccountName(None, self.group)
            except w.error:
                raise StartupError(f"control_group {self.group!r}: Windows knows no such group or account; create "
                                   "it (net localgroup NAME /add) or change the setting") from None
            group_sid = w.security.ConvertSidToStringSid(sid)
        self.permissions = PipePermissions(self.writer_sids, group_sid, self.group)
        self.sddl = pipe_sddl(self.writer_sids, [group_sid] if group_sid else [])
        attributes = w.security.SECURITY_ATTRIBUTES()
        attributes.SECURITY_DESCRIPTOR = w.security.ConvertStringSecurityDescriptorToSecurityDescriptor(
            self.sddl, w.security.SDDL_REVISION_1)
        attributes.bInheritHandle = False
        self._attributes = attributes
        self._stop_event = w.event.CreateEvent(None, True, False, None)
        try:
            self._listening = self._instance(first=True)
        except w.error as exc:
            if exc.winerror == ERROR_ACCESS_DENIED:
                raise StartupError(f"another process already serves the control pipe {self.name}: the same service "
                                   "is running twice, or something else took its name; stop it first") from None
            raise StartupError(f"control channel: cannot create the pipe {self.name}: {exc.strerror}") from None
        self.serving_since = time.monotonic()
        self._thread = threading.Thread(target=self._serve, name="servicehost-control", daemon=True)
        self._thread.start()
        logs.control_listening(log, self.name)

    def _instance(self, *, first: bool = False) -> Any:
        w = self._w
        assert w is not None
        return w.pipe.CreateNamedPipe(
            self.name,
            w.pipe.PIPE_ACCESS_DUPLEX | w.file.FILE_FLAG_OVERLAPPED | (FILE_FLAG_FIRST_PIPE_INSTANCE if first else 0),
            w.pipe.PIPE_TYPE_BYTE | w.pipe.PIPE_READMODE_BYTE | w.pipe.PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            w.pipe.PIPE_UNLIMITED_INSTANCES, BUFFER, BUFFER, 0, self._attributes)

    # -- accepting (one thread) ---------------------------------------------------------------------
    def _serve(self) -> None:
        w = self._w
        assert w is not None
        connected = w.event.CreateEvent(None, True, False, None)
        try:
            while not self._closing.is_set():
                handle = self._listening
                overlapped = w.types.OVERLAPPED()
                overlapped.hEvent = connected
                w.event.ResetEvent(connected)
                try:
                    rc = w.pipe.ConnectNamedPipe(handle, overlapped)
                except w.error as exc:
                    if exc.winerror == ERROR_NO_DATA:  # a client came and went (e.g. read the DACL by name)
                        w.pipe.DisconnectNamedPipe(handle)
                        continue
                    raise
                if rc == ERROR_IO_PENDING:
                    which = w.event.WaitForMultipleObjects([connected, self._stop_event], False, w.event.INFINITE)
                    if which != w.event.WAIT_OBJECT_0:
                        w.file.CancelIo(handle)
                        return
                    try:
                        w.file.GetOverlappedResult(handle, overlapped, False)
                    except w.error as exc:
                        if exc.winerror == ERROR_NO_DATA:
                            w.pipe.DisconnectNamedPipe(handle)
                            continue
                        raise
                self._listening = self._instance()
                self._admit(PipeConnection(w, handle, server=True))
        except BaseException as exc:  # never die silently: the channel is how the service is reached
            if not self._closing.is_set():
                logs.worker_crashed(log, "control channel", "servicehost-control", exc_info=exc)
            raise

    def _identify(self, conn: PipeConnection) -> Peer:
        assert self._w is not None
        return client_peer(self._w, conn.handle)

    def _send_now(self, conn: PipeConnection, reply: Mapping[str, Any]) -> None:
        conn.settimeout(self.peer_timeout)
        conn.sendall(encode_message(reply))

    def _interrupt(self, conn: PipeConnection) -> None:
        conn.interrupt()

    def _stop_accepting(self, deadline: Deadline) -> None:
        if self._w is not None and self._stop_event is not None:
            self._w.event.SetEvent(self._stop_event)
        if self._thread is not None:
            self._thread.join(deadline.remaining())

    def _release(self) -> None:
        if self._listening is not None:
            try:
                self._listening.Close()
            except Exception:  # noqa: BLE001 - closed already
                pass
            self._listening = None


class PipeClient(ControlClient):
    """Asks a service on its control pipe (:class:`~servicehost.platforms.control_client.ControlClient`'s
    calls, over the pipe). ``server_pid``: the pid the serving process must have (the service's,
    from the SCM); a pipe served by any other process is never sent anything."""

    def __init__(self, name: str, *, timeout: float = 10.0, server_pid: int | None = None) -> None:
        self.name = name
        self.where = name
        self.timeout = timeout
        self.server_pid = server_pid
        self.server_uids = None

    def _connect(self, deadline: float) -> PipeConnection:
        w = _Win32()
        while True:
            try:
                handle = w.file.CreateFile(
                    self.name, w.file.GENERIC_READ | w.file.GENERIC_WRITE, 0, None, w.file.OPEN_EXISTING,
                    w.file.FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, None)
                break
            except w.error as exc:
                if exc.winerror == ERROR_FILE_NOT_FOUND:
                    raise ControlUnavailable(f"no service answers at {self.name}: it is not running, or not ready to "
                                             "listen yet (see: servicehost status)") from None
                if exc.winerror == ERROR_ACCESS_DENIED:
                    raise ControlChannelError(
                        f"not allowed to open {self.name}: run this as an Administrator or as the service's account, "
                        "or join its control_group (then: status, threads and config)") from None
                if exc.winerror != ERROR_PIPE_BUSY:
                    raise ControlUnavailable(f"cannot open {self.name}: {exc.strerror}") from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ControlUnavailable(f"{self.name} stayed busy for {self.timeout:g}s") from None
                try:  # every instance is taken: wait for the next one the server makes
                    w.pipe.WaitNamedPipe(self.name, max(1, int(min(left, 1.0) * 1000)))
                except w.error:
                    pass  # not ready within this slice: try again until the deadline
        conn = PipeConnection(w, handle, server=False)
        conn.settimeout(self.timeout)
        if self.server_pid is not None:
            try:
                server = int(w.pipe.GetNamedPipeServerProcessId(handle))
            except (w.error, AttributeError):
                server = None
            if server is not None and server != self.server_pid:
                conn.close()
                raise ControlChannelError(
                    f"{self.name} is served by pid {server}, not by the service (pid {self.server_pid}); not "
                    "sending anything to it")
        return conn


def serve_pipe(host: Host, name: str, writers: Sequence[str]) -> PipeServer | None:
    """Start serving ``host``'s control pipe for the service ``name``; None (logged, event 5222)
    when it cannot be served: the service runs without it."""
    try:
        server = PipeServer(host, pipe_name(name), writers=writers)
        server.start()
    except (StartupError, OSError, ValueError) as exc:
        logs.control_unavailable(log, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - pywintypes.error: never fail the service for its channel
        logs.control_unavailable(log, exc)
        return None
    return server


def own_sids(name: str) -> list[str]:
    """The SIDs that may run every command besides SYSTEM and Administrators: the service's own
    (``NT SERVICE\\<name>``) and the account this process runs as."""
    w = _Win32()
    sids = [virtual_account_sid(name)]
    try:
        token = w.security.OpenProcessToken(w.api.GetCurrentProcess(), w.security.TOKEN_QUERY)
        try:
            sids.append(token_sids(w, token)[0])
        finally:
            token.Close()
    except w.error:
        pass  # the service's SID is enough
    return sids


__all__ = ["PipeClient", "PipeConnection", "PipePermissions", "PipeServer", "own_sids", "pipe_name", "pipe_sddl",
           "serve_pipe"]
