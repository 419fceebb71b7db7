"""Talking to a running supervisord: XML-RPC over its unix socket (with a timeout), its fault
codes and process states, and what its main log says about a program's exits.

xmlrpc and http.client are imported on first call: a running service never needs them.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import PlatformUnavailable
from .layout import Layout

if TYPE_CHECKING:
    import xmlrpc.client

RPC_TIMEOUT = 30.0
# supervisor.xmlrpc.Faults (not imported: the manager may talk to a supervisord of another Python).
BAD_NAME, NO_FILE, FAILED, SPAWN_ERROR, ALREADY_STARTED, NOT_RUNNING, ALREADY_ADDED, STILL_RUNNING, \
    CANT_REREAD = 10, 20, 30, 50, 60, 70, 90, 91, 92
STOPPED_STATES = ("STOPPED", "EXITED", "FATAL")

__all__ = [
    "ALREADY_ADDED", "ALREADY_STARTED", "BAD_NAME", "CANT_REREAD", "FAILED", "NOT_RUNNING", "NO_FILE", "RPC_TIMEOUT",
    "SPAWN_ERROR", "STILL_RUNNING", "STOPPED_STATES", "SupervisordNotRunning", "call", "fault_type", "faults_ok",
    "last_exit_from_log",
]


class SupervisordNotRunning(PlatformUnavailable):
    """Nothing answers on the supervisord socket."""


def call(layout: Layout, method: str, *args: Any, timeout: float = RPC_TIMEOUT) -> Any:
    """Call ``supervisor.METHOD`` of the supervisord of ``layout``, waiting at most ``timeout``
    seconds (xmlrpc Faults pass through for the caller to read: :func:`fault_type`)."""
    import xmlrpc.client

    proxy = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_unix_transport_class()(layout.socket, timeout))
    try:
        return getattr(proxy.supervisor, method)(*args)
    except (FileNotFoundError, ConnectionRefusedError):
        raise SupervisordNotRunning(
            f"no supervisord answers on {layout.socket} ({layout.origin} supervisord, config {layout.conf})") from None
    except PermissionError:
        raise PlatformUnavailable(
            f"not allowed to use supervisord's socket {layout.socket} (mode 0700): run this as "
            f"the user supervisord runs as (uid {_owner(layout.socket)})") from None
    except TimeoutError:
        raise PlatformUnavailable(f"supervisord on {layout.socket} did not answer {method} within {timeout:g}s") from None


def fault_type() -> type[xmlrpc.client.Fault]:
    """xmlrpc.client.Fault, imported only where a call to supervisord can raise it."""
    import xmlrpc.client

    return xmlrpc.client.Fault


@contextlib.contextmanager
def faults_ok(*codes: int) -> Iterator[None]:
    """Treat these supervisord faults as success (already started, already stopped, ...)."""
    try:
        yield
    except fault_type() as fault:
        if fault.faultCode not in codes:
            raise


def last_exit_from_log(text: str, name: str) -> int | None:
    """The last exit of program ``name`` in supervisord's main log: the code, or minus the signal."""
    rx = re.compile(rf"(?:exited|stopped): {re.escape(name)} \((?:exit status (\d+)|terminated by (SIG[A-Z0-9]+))")
    found = None
    for m in rx.finditer(text):
        found = m
    if found is None:
        return None
    if found[1] is not None:
        return int(found[1])
    try:
        return -int(signal.Signals[found[2]])
    except KeyError:
        return None


@functools.cache
def _unix_transport_class() -> type:
    """The stdlib XML-RPC transport over a unix socket, with a timeout (supervisor's own has none).
    Built on first use: xmlrpc/http.client are heavy imports a running service never needs."""
    import http.client
    import xmlrpc.client

    class UnixConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self._path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    class UnixTransport(xmlrpc.client.Transport):
        def __init__(self, path: Path, timeout: float) -> None:
            super().__init__()
            self._path, self._timeout = str(path), timeout

        def make_connection(self, host: Any) -> http.client.HTTPConnection:
            return UnixConnection(self._path, self._timeout)

    return UnixTransport


def _owner(path: Path) -> str:
    try:
        return str(path.stat().st_uid)
    except OSError:
        return "unknown"
