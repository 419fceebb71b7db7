"""Example (c) as a real process: real sockets, real SIGTERM while requests are in flight.

The invariant under test: every request the service read is answered before it exits, and it
exits 0. Timeouts are hang guards only.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import threading
import time

from servicehost.errors import ExitCode

from .proc import EXAMPLES, HANG_GUARD, ServiceProcess

TARGET = str(EXAMPLES / "tcp_lines.py")
CLIENTS = 50


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect(port: int) -> socket.socket:
    """Connect, retrying until the service listens (hang guard: HANG_GUARD seconds)."""
    end = time.monotonic() + HANG_GUARD
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def start(tmp_path, port: int, *extra: str) -> ServiceProcess:
    return ServiceProcess("run", TARGET, "--port", str(port), "--state-dir", str(tmp_path),
                          "--log-file", "none", *extra)


def test_sigterm_with_requests_in_flight_answers_every_accepted_request_and_exits_0(tmp_path):
    port = free_port()
    with start(tmp_path, port) as svc:
        svc.ready()  # fails at once, with the output, if the process ends instead
        connect(port).close()  # it listens
        first_replies = threading.Barrier(CLIENTS + 1, timeout=HANG_GUARD)
        errors: list[str] = []
        finished: list[int] = []

        def client(n: int) -> None:
            try:
                with connect(port) as sock:
                    reader = sock.makefile("rb")
                    sock.sendall(b"UPPER client %d\n" % n)
                    assert reader.readline() == b"CLIENT %d\n" % n
                    text = b"payload %d" % n
                    sock.sendall(b"HASH " + text + b"\n")
                    assert reader.readline() == hashlib.sha256(text).hexdigest().encode() + b"\n"
                    # Pipelined, in one segment: once "A" comes back, the server has read all four.
                    sock.sendall(b"UPPER a%d\nSLEEP 300\nNOPE\nUPPER b%d\n" % (n, n))
                    assert reader.readline() == b"A%d\n" % n
                    first_replies.wait()  # the test sends SIGTERM now
                    assert reader.readline() == b"ok\n"  # in flight at the signal: still answered
                    assert reader.readline() == b"ERR unknown command\n"
                    assert reader.readline() == b"B%d\n" % n
                    assert reader.readline() == b""  # then a clean EOF
                finished.append(n)
            except BaseException as exc:  # noqa: BLE001 - reported below, with the client number
                errors.append(f"client {n}: {exc!r}")
                first_replies.abort()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        first_replies.wait()
        svc.signal(signal.SIGTERM)
        for t in threads:
            t.join(HANG_GUARD)
        code = svc.wait()
        out = "\n".join(svc.output())
    assert not errors, errors[:5]
    assert sorted(finished) == list(range(CLIENTS))
    assert code == ExitCode.OK, out
    assert "stopped: exit code 0 (OK)" in out and "not finished" not in out


def test_a_port_in_use_fails_the_start_with_code_3_naming_the_address(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        svc = start(tmp_path, port)
        code = svc.wait()
        out = "\n".join(svc.output())
    assert code == ExitCode.START_FAILURE, out
    assert f"127.0.0.1:{port}" in out and "already in use" in out
