"""A control channel opened once the service is ready, on a thread of its own: what a run in a
terminal (the unix socket) and a service under the SCM (the named pipe) share. The channel is
needed only to find and ask a service once it runs, so opening it, and importing what it needs,
costs the start nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..host import Host


@contextmanager
def channel_once_ready(host: Host, opener: Callable[[], Any] | None = None) -> Iterator[None]:
    """Serve ``host``'s control channel from the moment it is ready, on a thread of its own: the
    channel is needed only to find and ask a service once it runs, so opening it (and importing
    what it needs) costs the start nothing. ``opener`` makes the server (something with
    ``close()``, or None when it could not be served); default: the unix socket
    (``control.open_channel``); the Windows SCM passes its named pipe. Closed when the block ends."""
    lock = threading.Lock()
    opened: list[object] = []  # the server, once open (None if it could not be)
    state = {"asked": False, "closed": False}

    def open_it() -> None:
        if opener is None:
            from .control import open_channel

            server = open_channel(host)
        else:
            server = opener()
        with lock:
            if not state["closed"]:
                opened.append(server)
                return
        if server is not None:
            server.close()  # the run ended while it opened

    def once_ready() -> None:
        with lock:
            if state["asked"] or state["closed"]:
                return
            state["asked"] = True
        threading.Thread(target=open_it, name="servicehost-control-open", daemon=True).start()

    # After the ready line, not on the move to RUNNING: the new thread would take the interpreter
    # from the start's last steps (the ready line came 0.3 ms later, at times 5-10 ms).
    host.after_ready(once_ready)
    try:
        yield
    finally:
        with lock:
            state["closed"] = True
            servers = list(opened)
        for server in servers:
            if server is not None:
                server.close()  # type: ignore[attr-defined]
