"""Example (c): an event-driven TCP line service.

One selector thread holds every client connection; each request line runs on a pool of
threads, and the replies of one connection come back in the order of its requests (so a client
may pipeline). Idle and slow clients cannot lock the others out: a client that sends nothing for
``--idle-timeout`` seconds is closed, a request line must arrive within ``--read-timeout`` of its
first byte, and when ``--max-connections`` are open the longest-idle client makes room. A stop (SIGTERM, Ctrl-C, the SCM) stops accepting, answers every request
already read, then closes the connections; the process exits 0.

Protocol, one line per request and one line per reply:

    UPPER text   →  TEXT
    HASH text    →  the SHA-256 of text, in hex
    SLEEP ms     →  ok, after sleeping ms milliseconds (at most 60000)
    anything else → ERR unknown command

    servicehost run examples/tcp_lines.py            # or: python examples/tcp_lines.py run
    servicehost run examples/tcp_lines.py --port 9000 --workers 32 --max-connections 5000
    printf 'UPPER hello\\nHASH abc\\n' | nc 127.0.0.1 7070
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import servicehost
from servicehost import Deadline, Service, setting
from servicehost.workers.event_server import EventServer

MAX_SLEEP_MS = 60_000


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = setting(7070, "TCP port to listen on", min=0, max=65535)
    workers: int = setting(16, "threads answering requests", min=1, max=1024)
    max_connections: int = setting(
        1024, "clients connected at once; when full, the longest-idle one makes room", min=1, max=1_000_000)
    idle_timeout: float = setting(
        60.0, "seconds a client may stay connected sending no request (or reading no reply)", min=0.1)
    read_timeout: float = setting(10.0, "seconds one request line may take to arrive, from its first byte", min=0.1)


def answer(request: bytes, peer: object) -> bytes:
    """One request line → one reply line (runs on a pool thread)."""
    command, _, arg = request.decode("utf-8", "replace").partition(" ")
    if command == "UPPER":
        return arg.upper().encode()
    if command == "HASH":
        return hashlib.sha256(arg.encode()).hexdigest().encode()
    if command == "SLEEP":
        try:
            ms = int(arg)
        except ValueError:
            return b"ERR SLEEP needs a number of milliseconds"
        if not 0 <= ms <= MAX_SLEEP_MS:
            return b"ERR SLEEP takes 0 to %d ms" % MAX_SLEEP_MS
        time.sleep(ms / 1000)
        return b"ok"
    return b"ERR unknown command"


class TcpLines(Service[Settings]):
    """Answers UPPER/HASH/SLEEP lines over TCP."""

    name = "TcpLines"
    description = "servicehost example: an event-driven TCP line service"

    def start(self) -> None:
        s = self.settings
        # Binding happens here, so a port in use fails the start (exit code 3) with its address.
        self.server = self.use(EventServer(
            answer, s.host, s.port, name="lines", workers=s.workers, max_connections=s.max_connections,
            idle_timeout=s.idle_timeout, read_timeout=s.read_timeout))
        self.server.start()
        host, port = self.server.address
        self.log.info("answering on %s:%d", host, port)

    def stop(self, deadline: Deadline) -> None:
        # The host closes and drains the server after this: nothing to do but say so.
        self.log.info("stopping: %s", self.server.connection_counters().summary())


if __name__ == "__main__":
    servicehost.main(TcpLines)
