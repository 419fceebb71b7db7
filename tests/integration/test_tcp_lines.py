"""Example (c) as a real process: real sockets, real SIGTERM while requests are in flight.

The invariant under test: every request the service read is answered before it exits, and it
exits 0. Timeouts are hang guards only.
"""

from __future__ import annotations

import hashlib
import re
import signal
import socket
import threading
import time

import pytest

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


CLIENT_GUARD = 10.0  # seconds each new client may take to be answered: a hang guard


def _room_for_descriptors(needed: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard} (raise it: ulimit -Hn {needed})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.mark.parametrize("limit", [20, 1024], ids=["max-connections-20", "default-1024"])
def test_idle_clients_beyond_max_connections_never_lock_new_clients_out(tmp_path, limit):
    port = free_port()
    extra = () if limit == 1024 else ("--max-connections", str(limit))
    idle_count = limit + -(-limit // 10)  # max_connections + 10%
    _room_for_descriptors(idle_count + 256)
    idle: list[socket.socket] = []
    with start(tmp_path, port, *extra) as svc:
        svc.ready()
        try:
            idle.append(connect(port))
            for _ in range(idle_count - 1):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=CLIENT_GUARD))
            new = [socket.create_connection(("127.0.0.1", port), timeout=CLIENT_GUARD) for _ in range(5)]
            idle += new
            for n, sock in enumerate(new):
                sock.sendall(b"UPPER new client %d\n" % n)
            replies = [sock.makefile("rb").readline() for sock in new]
            assert replies == [b"NEW CLIENT %d\n" % n for n in range(5)]
        finally:
            for sock in idle:
                sock.close()
        svc.signal(signal.SIGTERM)
        code = svc.wait()
        out = "\n".join(svc.output())
    assert code == ExitCode.OK, out
    assert f"max_connections={limit} reached: the longest-idle connection is closed to make room" in out
    assert re.search(r"stopping: lines: \d+ open, \d+ accepted, 0 refused, \d+ evicted", out), out


def test_a_client_dripping_one_byte_at_a_time_is_closed_by_the_read_timeout(tmp_path):
    port = free_port()
    with start(tmp_path, port, "--read-timeout", "0.5") as svc:
        svc.ready()
        with connect(port) as dripper:
            stop = threading.Event()

            def drip() -> None:  # one byte every 50 ms, never a newline
                try:
                    while not stop.wait(0.05):
                        dripper.send(b"U")
                except OSError:
                    pass  # closed by the service: what this test waits for

            t = threading.Thread(target=drip, daemon=True)
            t.start()
            dripper.settimeout(CLIENT_GUARD)
            try:
                assert dripper.recv(100) == b""  # EOF: the service gave up reading from it
            finally:
                stop.set()
                t.join(HANG_GUARD)
        with connect(port) as other:
            other.sendall(b"UPPER still served\n")
            assert other.makefile("rb").readline() == b"STILL SERVED\n"
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK
