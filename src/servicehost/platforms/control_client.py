"""The control channel's client half: what ``servicehost status|pause|resume|threads|...`` and the
Linux managers use to ask a running service (:class:`ControlClient`), and how they read its answers
(:func:`status_fields`; a thread dump's text is ``ops/threads.py``'s). The service side, the wire format and the paths
are :mod:`servicehost.platforms.control`.

A service never imports this module: an idle service carries only the half it serves with.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .control import (
    MAX_REPLY,
    STATUS_STATES,
    STATUS_TIMEOUT,
    ControlChannelError,
    ControlUnavailable,
    MessageError,
    Peer,
    _remaining,
    encode_message,
    receive_message,
    send_message,
    socket_path,
)

if TYPE_CHECKING:
    from .base import ServiceStatus


class ControlClient:
    """Sends requests to a service's control channel. Each call blocks at most ``timeout`` seconds
    in all (connecting, sending and receiving together, however slowly the answer comes).

    ``server_uids`` (optional): the uids the serving process may have; anything else is refused
    before a request is sent (so a socket put there by someone else is never trusted). Another
    transport (the Windows named pipe's ``PipeClient``) provides :meth:`_connect` and ``where``.
    """

    def __init__(self, path: Path, *, timeout: float = 10.0, server_uids: frozenset[int] | None = None) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self.timeout = timeout
        self.server_uids = server_uids

    def _connect(self, deadline: float) -> Any:
        """A connection to the service (socket-like); ControlUnavailable when nothing answers,
        ControlChannelError when it may not be reached."""
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
                raise ControlChannelError(f"not allowed to reach {self.path}: {self._who_may()}") from None
            except OSError as exc:
                raise ControlUnavailable(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
            if self.server_uids is not None:
                server = Peer.of(sock)
                if server.uid not in self.server_uids:
                    raise ControlChannelError(
                        f"{self.path} is served by uid {server.uid}, not by the service's account; "
                        "not sending anything to it: remove the socket and restart the service")
        except BaseException:
            sock.close()
            raise
        return sock

    def _who_may(self) -> str:
        """Who may reach the socket, and which group to join to read it (its directory's group,
        when the service gave it one: its ``control_group``)."""
        text = "run this as root or as the service's user"
        try:
            st = os.stat(self.path.parent)
        except OSError:
            return text
        if st.st_mode & 0o050 == 0o050 and st.st_gid != 0:
            import grp

            try:
                group = grp.getgrgid(st.st_gid).gr_name
            except KeyError:
                group = str(st.st_gid)
            text += f", or join group {group} (its control_group) to read its status, threads and config"
        return text

    def call(self, command: str, **args: Any) -> Any:
        """Run ``command`` in the service; its result. ControlChannelError says what went wrong."""
        request = {"command": command, "args": args}
        try:
            encode_message(request)
        except ValueError as exc:  # too big: say so before connecting
            raise ControlChannelError(f"{command}: {exc}") from None
        deadline = time.monotonic() + self.timeout
        conn = self._connect(deadline)
        try:
            try:
                try:
                    send_message(conn, request, deadline=deadline)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused at once (e.g. busy): the reason may be waiting to be read
                conn.settimeout(_remaining(deadline))
                reply = receive_message(conn, deadline=deadline, limit=MAX_REPLY)
            except TimeoutError:
                raise ControlChannelError(
                    f"{command}: no answer from {self.where} within {self.timeout:g}s "
                    "(a hook may be blocking; see the service's log)") from None
            except MessageError as exc:
                raise ControlChannelError(f"{command}: {self.where} answered with something else than a "
                                          f"control message: {exc}") from None
            except (OSError, ValueError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (None, errno.ECONNRESET, errno.EPIPE):
                    raise ControlChannelError(f"{command}: {self.where}: {exc.strerror or exc}") from None
                raise ControlChannelError(f"{command}: the service closed the connection ({exc})") from None
        finally:
            conn.close()
        if reply is None:
            raise ControlChannelError(f"{command}: the service closed the connection without answering")
        if not reply.get("ok"):
            raise ControlChannelError(f"{command}: {reply.get('error', 'refused')}")
        return reply.get("result")


def status_fields(answer: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~servicehost.platforms.base.ServiceStatus` fields from the channel's answer to
    ``status`` (or ``ping``, which lacks the rest): state, sub_state (the host's own state), ready,
    status_line, counters, and what the service says of itself (``ops/status.py``): since when it
    is in its state, health, the last error, versions. A key an older service does not send is
    None."""
    host_state = str(answer.get("state", ""))
    counters = answer.get("counters")

    def of(key: str, kind: type | tuple[type, ...]) -> Any:
        """The answer's ``key`` if it has the type ``kind`` (a bool is not a number here)."""
        value = answer.get(key)
        if kind is bool:
            return value if isinstance(value, bool) else None
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    return {
        "state": STATUS_STATES.get(host_state, "unknown"),
        "sub_state": host_state or None,
        "ready": bool(answer.get("ready")),
        "status_line": answer.get("status_line"),
        "counters": counters if isinstance(counters, list) else None,
        "state_since": of("state_since", (int, float)),
        "healthy": of("healthy", bool),
        "last_error": of("last_error", dict),
        "version": of("version", str),
        "servicehost_version": of("servicehost", str),
        "python": of("python", str),
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


class ChannelOperations:
    """pause/resume/control/reload of a running service through its control channel: the part of
    a :class:`~servicehost.platforms.base.Manager` every Linux manager shares. A manager provides
    ``name`` and ``_client(service)``, and may override ``_check(service)`` (e.g. "installed?")."""

    name: str

    def _client(self, service: str) -> ControlClient:
        raise NotImplementedError

    def _check(self, service: str) -> None:
        """Raise if ``service`` cannot be asked anything (default: nothing to check)."""

    def ask(self, service: str, command: str, *, timeout: float | None = None, **args: Any) -> Any:
        """Run ``command`` in the running service; its result (``Manager.ask``)."""
        self._check(service)
        try:
            client = self._client(service) if timeout is None else self._client(service, timeout=timeout)  # type: ignore[call-arg]
            return client.call(command, **args)
        except ControlUnavailable as exc:
            raise ControlUnavailable(
                f"{service} is not running under {self.name}, or not ready yet: {exc}") from None

    def _ask(self, service: str, command: str, **args: Any) -> None:
        self.ask(service, command, **args)

    def pause(self, name: str) -> None:
        self._ask(name, "pause")

    def resume(self, name: str) -> None:
        self._ask(name, "resume")

    def control(self, name: str, code: int) -> None:
        self._ask(name, "control", code=code)

    def reload(self, name: str) -> None:
        """The services' ``reload()``; errors come back to the caller (a signal cannot report them)."""
        self._ask(name, "reload")
