"""EventServer over real sockets on 127.0.0.1 (port 0). Timeouts are hang guards only."""

from __future__ import annotations

import hashlib
import logging
import random
import socket
import threading
import time

import pytest

from servicehost.errors import StartupError
from servicehost.service import Service
from servicehost.stopping import Deadline
from servicehost.components import Component
from servicehost.workers.event_server import BindError, EventServer, LineFraming

GUARD = 30.0  # seconds; a hang guard, never a speed assertion


def upper(request: bytes, peer) -> bytes:
    return request.upper()


def connect(server: EventServer) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=GUARD)
    return sock


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    reader = sock.makefile("rb")
    return [reader.readline() for _ in range(count)]


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def wait_until(predicate, what: str, timeout: float = GUARD) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"hang guard: {what}")
        time.sleep(0.005)


def test_it_is_a_component_that_binds_on_start_and_reports_its_address():
    server = EventServer(upper)
    assert isinstance(server, Component)
    with pytest.raises(RuntimeError):
        server.address  # noqa: B018 - not bound before start()
    with server:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        with connect(server) as sock:
            sock.sendall(b"hello\r\nworld\n")
            assert read_lines(sock, 2) == [b"HELLO\n", b"WORLD\n"]


def test_many_concurrent_clients_each_get_every_reply_in_order():
    def handler(request: bytes, peer) -> bytes:
        client, line = request.split(b" ")
        time.sleep(random.random() / 1000)
        return b"%s %s %s" % (client, line, hashlib.sha256(request).hexdigest().encode())

    errors: list[str] = []

    def client(n: int, server: EventServer) -> None:
        try:
            with connect(server) as sock:
                reader = sock.makefile("rb")
                for i in range(20):
                    request = b"c%d l%d" % (n, i)
                    sock.sendall(request + b"\n")
                    expected = b"c%d l%d %s\n" % (n, i, hashlib.sha256(request).hexdigest().encode())
                    got = reader.readline()
                    if got != expected:
                        errors.append(f"client {n} line {i}: {got!r}")
                        return
        except OSError as exc:
            errors.append(f"client {n}: {exc!r}")

    with EventServer(handler, workers=8) as server:
        threads = [threading.Thread(target=client, args=(n, server)) for n in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GUARD)
        assert not any(t.is_alive() for t in threads), "hang guard: clients"
        assert not errors, errors[:5]
        # A reply is sent before its worker counts it: wait for the count.
        wait_until(lambda: server.counters().completed == 4000, "all counted")
        c = server.counters()
        assert (c.submitted, c.completed, c.failed) == (4000, 4000, 0)
        wait_until(lambda: server.connection_counters().open == 0, "clients closed")
        cc = server.connection_counters()
        assert (cc.accepted, cc.refused, cc.oversize) == (200, 0, 0)


def test_pipelined_requests_are_answered_in_order_though_workers_finish_out_of_order():
    def handler(request: bytes, peer) -> bytes:
        n = int(request)
        if n % 7 == 0:
            time.sleep(0.002)  # later requests overtake this one on other workers
        return b"%d" % (n * 2)

    count = 5000
    with EventServer(handler, workers=8, queue_size=64, max_pipelined=32) as server:
        with connect(server) as sock:
            payload = b"".join(b"%d\n" % i for i in range(count))
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()  # a writer that never waits for replies: backpressure must hold
            replies = read_lines(sock, count)
            sender.join(GUARD)
        assert replies == [b"%d\n" % (i * 2) for i in range(count)]
        wait_until(lambda: server.counters().completed == count, "all counted")


def test_a_handler_returning_none_sends_no_reply():
    def handler(request: bytes, peer):
        return None if request.startswith(b"quiet") else request

    with EventServer(handler) as server, connect(server) as sock:
        sock.sendall(b"quiet 1\nloud 2\nquiet 3\nloud 4\n")
        assert read_lines(sock, 2) == [b"loud 2\n", b"loud 4\n"]


def test_an_oversize_line_closes_only_that_connection_after_earlier_replies(caplog):
    with caplog.at_level(logging.WARNING, logger="servicehost.workers"):
        with EventServer(upper, max_line=100) as server:
            with connect(server) as good, connect(server) as bad:
                bad.sendall(b"first\n" + b"x" * 101 + b"\nnever\n")
                assert read_to_eof(bad) == b"FIRST\n"  # the reply before it, then EOF
                good.sendall(b"still fine\n" + b"y" * 100 + b"\n")  # exactly max_line is allowed
                assert read_lines(good, 2) == [b"STILL FINE\n", b"Y" * 100 + b"\n"]
                with connect(server) as endless:
                    endless.sendall(b"z" * 5000)  # no newline at all
                    assert read_to_eof(endless) == b""
            assert server.connection_counters().oversize == 2
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "connection_error"]
    assert len(warnings) == 2 and "longer than 100" in warnings[0].getMessage()


def test_beyond_max_connections_with_every_connection_busy_a_client_is_accepted_then_closed(caplog):
    gate = threading.Event()

    def gated(request: bytes, peer) -> bytes:
        if request.startswith(b"busy"):
            gate.wait(GUARD)
        return request.upper()

    with caplog.at_level(logging.WARNING, logger="servicehost.workers"):
        with EventServer(gated, max_connections=3) as server:
            held = [connect(server) for _ in range(3)]
            for i, sock in enumerate(held):  # each has a request in flight: none may be evicted
                sock.sendall(b"busy%d\n" % i)
            wait_until(lambda: server.counters().submitted == 3, "three requests in flight")
            with connect(server) as extra:
                extra.sendall(b"refused?\n")
                assert read_to_eof(extra) == b""
            cc = server.connection_counters()
            assert (cc.open, cc.refused, cc.evicted) == (3, 1, 0)
            gate.set()
            for i, sock in enumerate(held):
                assert read_lines(sock, 1) == [b"BUSY%d\n" % i]
            held.pop().close()
            wait_until(lambda: server.connection_counters().open == 2, "a slot freed")
            with connect(server) as again:
                again.sendall(b"welcome\n")
                assert read_lines(again, 1) == [b"WELCOME\n"]
            for sock in held:
                sock.close()
    assert [r.event_id for r in caplog.records if getattr(r, "event", "") == "connections_refused"] == [3009]


def test_drain_finishes_in_flight_requests_and_flushes_every_reply_then_closes():
    started = threading.Semaphore(0)

    def slow(request: bytes, peer) -> bytes:
        started.release()
        time.sleep(0.1)
        return b"done " + request

    server = EventServer(slow, workers=4).start()
    clients = [connect(server) for _ in range(12)]
    for i, sock in enumerate(clients):
        sock.sendall(b"a%d\nb%d\n" % (i, i))  # pipelined: two requests each
    wait_until(lambda: server.counters().submitted == 24, "all 24 requests read")
    assert started.acquire(timeout=GUARD)  # some are running now, the rest queued
    left = server.drain(Deadline.after(GUARD))
    assert left is None
    for i, sock in enumerate(clients):
        assert read_to_eof(sock) == b"done a%d\ndone b%d\n" % (i, i)  # every reply, then EOF
        sock.close()
    assert server.counters().completed == 24
    with pytest.raises(OSError):  # the listening socket is gone
        socket.create_connection(server.address, timeout=GUARD).close()


def test_close_stops_reading_requests_sent_after_it():
    gate = threading.Event()

    def gated(request: bytes, peer) -> bytes:
        gate.wait(GUARD)
        return request

    server = EventServer(gated, workers=1).start()
    with connect(server) as sock:
        sock.sendall(b"before\n")
        wait_until(lambda: server.counters().submitted == 1, "request read")
        server.close()
        sock.sendall(b"after\n")  # the server reads no new requests once closed
        gate.set()
        assert server.drain(Deadline.after(GUARD)) is None
        assert read_to_eof(sock) == b"before\n"
    assert server.counters().submitted == 1


def test_drain_at_the_deadline_reports_what_was_not_answered():
    release = threading.Event()

    def stuck(request: bytes, peer) -> bytes:
        release.wait(GUARD)
        return request

    server = EventServer(stuck, workers=2, queue_size=8).start()
    sock = connect(server)
    sock.sendall(b"".join(b"r%d\n" % i for i in range(6)))
    wait_until(lambda: server.counters().in_flight == 2, "two running")
    began = time.monotonic()
    left = server.drain(Deadline.after(0.2))
    assert time.monotonic() - began < GUARD
    release.set()
    assert left is not None and left.kind == "requests"
    assert (left.queued, left.running) == (4, 2)
    assert all("stuck" in what for what in left.running_what)
    assert read_to_eof(sock) == b""  # closed, no reply
    sock.close()


def test_a_full_pool_stops_reading_instead_of_buffering():
    release = threading.Event()

    def stuck(request: bytes, peer) -> bytes:
        release.wait(GUARD)
        return request

    with EventServer(stuck, workers=1, queue_size=2) as server:
        clients = [connect(server) for _ in range(5)]
        for i, sock in enumerate(clients):
            sock.sendall(b"".join(b"c%d-%d\n" % (i, j) for j in range(50)))
        wait_until(lambda: server.counters().submitted == 3, "the pool filled up")
        time.sleep(0.2)  # give it time to (wrongly) take more
        assert server.counters().submitted == 3  # queue_size + workers, no more
        release.set()
        for i, sock in enumerate(clients):
            assert read_lines(sock, 50) == [b"c%d-%d\n" % (i, j) for j in range(50)]
            sock.close()


def test_a_failing_handler_is_counted_and_ends_only_its_connection(caplog):
    def picky(request: bytes, peer) -> bytes:
        if request == b"boom":
            raise ValueError("boom")
        return request

    with caplog.at_level(logging.ERROR, logger="servicehost.workers"):
        with EventServer(picky) as server:
            with connect(server) as sock:
                sock.sendall(b"one\nboom\nthree\n")
                assert read_to_eof(sock) == b"one\n"
            with connect(server) as other:
                other.sendall(b"fine\n")
                assert read_lines(other, 1) == [b"fine\n"]
            wait_until(lambda: server.counters().completed == 3, "counted")
            assert server.counters().failed == 1
    failed = [r for r in caplog.records if getattr(r, "event", "") == "task_failed"]
    assert len(failed) == 1 and "picky" in failed[0].getMessage() and failed[0].exc_info


def test_a_client_that_half_closes_still_gets_its_replies():
    with EventServer(upper) as server, connect(server) as sock:
        sock.sendall(b"a\nb\nunterminated")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b"A\nB\n"


def test_pause_holds_requests_until_resume():
    with EventServer(upper) as server, connect(server) as sock:
        sock.sendall(b"x\n")
        assert read_lines(sock, 1) == [b"X\n"]
        server.pause()
        time.sleep(0.05)
        sock.sendall(b"y\n")
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(10)  # not read while paused
        sock.settimeout(GUARD)
        server.resume()
        assert read_lines(sock, 1) == [b"Y\n"]


def test_address_in_use_is_a_clear_error_naming_host_and_port():
    with EventServer(upper) as first:
        host, port = first.address
        with pytest.raises(BindError) as caught:
            EventServer(upper, host, port, name="second").start()
    assert f"{host}:{port}" in str(caught.value) and "in use" in str(caught.value)
    assert isinstance(caught.value, StartupError) and isinstance(caught.value, OSError)


def test_a_service_composes_it_and_a_bind_error_fails_its_start():
    from servicehost.host import Host

    class Echo(Service):
        def start(self) -> None:
            self.server = self.use(EventServer(upper, port=self.settings))
            self.server.start()

    first = Echo(0)
    host = Host([first])
    host.start()
    port = first.server.address[1]
    with connect(first.server) as sock:
        sock.sendall(b"via host\n")
        assert read_lines(sock, 1) == [b"VIA HOST\n"]
    blocked = Host([Echo(port)])
    with pytest.raises(StartupError, match=f"127.0.0.1:{port}"):
        blocked.start()
    blocked.request_stop("test")
    blocked.wait()
    host.request_stop("test")
    assert host.wait() == 0


def test_line_framing_splits_only_complete_lines_up_to_the_limit():
    framing = LineFraming(max_line=5)
    buf = bytearray(b"ab\ncd\r\nefg")
    assert framing.split(buf, 1) == [b"ab"]
    assert framing.split(buf, 10) == [b"cd"]
    assert buf == bytearray(b"efg")
    assert framing.encode(b"x") == b"x\n" and framing.encode(b"y\n") == b"y\n"


# -- issue 7, item 7: idle and slow clients never lock the others out ------------------------------
CLIENT_GUARD = 10.0  # seconds each new client may take to get its reply: a hang guard, not a timing


def _room_for_descriptors(needed: int) -> None:
    """Raise this process's soft open-file limit to ``needed`` (both ends of every connection live
    here); skip, saying why, only when the hard limit does not allow it."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        pytest.skip("no resource module: cannot raise the open-file limit here")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard} (raise it: ulimit -Hn {needed})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _answered(server: EventServer, text: bytes) -> bytes:
    with socket.create_connection(server.address, timeout=CLIENT_GUARD) as sock:
        sock.sendall(text + b"\n")
        return sock.makefile("rb").readline()


@pytest.mark.parametrize("max_connections", [10, None], ids=["small-limit", "default-limit"])
def test_idle_connections_beyond_max_connections_do_not_lock_new_clients_out(max_connections):
    kwargs = {} if max_connections is None else {"max_connections": max_connections}
    with EventServer(upper, **kwargs) as server:
        limit = server.max_connections
        idle_count = limit + -(-limit // 10)  # max_connections + 10%, rounded up
        _room_for_descriptors(2 * idle_count + 256)
        idle = []
        try:
            for _ in range(idle_count):  # connect and say nothing
                idle.append(socket.create_connection(server.address, timeout=CLIENT_GUARD))
            taken = lambda: server.connection_counters().accepted + server.connection_counters().refused  # noqa: E731
            wait_until(lambda: taken() >= idle_count, "every idle client taken in", CLIENT_GUARD)
            new = [socket.create_connection(server.address, timeout=CLIENT_GUARD) for _ in range(5)]
            idle += new  # closed in the end, with the others; all five stay connected until then
            for n, sock in enumerate(new):
                sock.sendall(b"client %d\n" % n)
            assert [sock.makefile("rb").readline() for sock in new] == [b"CLIENT %d\n" % n for n in range(5)]
            cc = server.connection_counters()
            assert cc.open <= limit and cc.refused == 0
            assert cc.evicted == idle_count + 5 - limit  # the longest-idle made room, one each
        finally:
            for sock in idle:
                sock.close()


def test_eviction_takes_the_longest_idle_connection_never_one_with_a_request_in_flight():
    gate = threading.Event()

    def gated(request: bytes, peer) -> bytes:
        if request.startswith(b"wait"):
            gate.wait(GUARD)
        return request.upper()

    with EventServer(gated, max_connections=3) as server:
        busy = connect(server)
        busy.sendall(b"wait for me\n")
        wait_until(lambda: server.counters().in_flight == 1, "the busy request running")
        oldest, newer = connect(server), connect(server)
        newer.sendall(b"hi\n")  # a round trip: newer was active after oldest
        assert read_lines(newer, 1) == [b"HI\n"]
        wait_until(lambda: server.connection_counters().accepted == 3, "three accepted")
        assert _answered(server, b"newcomer") == b"NEWCOMER\n"
        assert read_to_eof(oldest) == b""  # the longest idle one made room
        newer.sendall(b"still here\n")
        assert read_lines(newer, 1) == [b"STILL HERE\n"]
        gate.set()
        assert read_lines(busy, 1) == [b"WAIT FOR ME\n"]  # never chosen: its request was in flight
        for sock in (busy, oldest, newer):
            sock.close()
        assert server.connection_counters().evicted == 1


def test_a_dripping_client_is_closed_after_the_read_timeout_counted_from_its_first_byte():
    with EventServer(upper, read_timeout=0.5, idle_timeout=60) as server:
        with connect(server) as dripper:
            stop = threading.Event()

            def drip() -> None:  # one byte every 50 ms, never a newline: each byte is "activity"
                try:
                    while not stop.wait(0.05):
                        dripper.send(b"x")
                except OSError:
                    pass  # closed by the server: what this test waits for

            t = threading.Thread(target=drip, daemon=True)
            t.start()
            try:
                assert read_to_eof(dripper) == b""  # hang guard: GUARD (the socket's timeout)
            finally:
                stop.set()
                t.join(GUARD)
            assert _answered(server, b"others are served") == b"OTHERS ARE SERVED\n"
        cc = server.connection_counters()
        assert cc.read_timeouts == 1 and cc.idle_timeouts == 0


def test_an_idle_connection_is_closed_after_the_idle_timeout_but_a_slow_request_is_not():
    gate = threading.Event()

    def gated(request: bytes, peer) -> bytes:
        gate.wait(GUARD)
        return request.upper()

    with EventServer(gated, idle_timeout=0.3) as server:
        with connect(server) as busy, connect(server) as idle:
            busy.sendall(b"slow\n")
            wait_until(lambda: server.counters().in_flight == 1, "the slow request running")
            assert read_to_eof(idle) == b""  # closed: it said nothing for idle_timeout
            wait_until(lambda: server.connection_counters().idle_timeouts == 1, "counted")
            gate.set()
            assert read_lines(busy, 1) == [b"SLOW\n"]  # waiting for the handler is not idling
        assert server.connection_counters().idle_timeouts == 1


def test_a_disconnected_clients_queued_requests_are_cancelled_not_run():
    gate = threading.Event()
    ran: list[bytes] = []

    def gated(request: bytes, peer) -> bytes:
        ran.append(request)
        gate.wait(GUARD)
        return request

    with EventServer(gated, workers=1) as server:
        sock = connect(server)
        sock.sendall(b"".join(b"r%d\n" % i for i in range(20)))
        wait_until(lambda: server.counters().submitted == 20, "20 requests read")
        wait_until(lambda: len(ran) == 1, "the first one running")
        # Gone for good: a reset (SO_LINGER 0) rather than a half-close, which still wants replies.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        wait_until(lambda: server.connection_counters().open == 0, "the server saw it go")
        gate.set()
        wait_until(lambda: server.counters().in_flight == 0 and server.counters().queue_depth == 0, "pool idle")
        assert ran == [b"r0"]  # the 19 not started never ran
        wait_until(lambda: server.connection_counters().cancelled == 19, "19 cancelled")
        counters = server.counters()
        assert (counters.submitted, counters.completed, counters.failed) == (1, 1, 0)


def test_timeouts_are_checked_on_construction():
    for bad in ({"idle_timeout": 0}, {"read_timeout": -1}, {"idle_timeout": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EventServer(upper, **bad)


_LOW_LIMIT_SERVER = """
import resource, sys, logging
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))  # soft and hard: the server cannot raise it
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
from servicehost.workers.event_server import EventServer
server = EventServer(lambda request, peer: request.upper(), max_connections=1024).start()
print(server.address[1], flush=True)
sys.stdin.read()  # until the test closes it
cc = server.connection_counters()
print(cc.evicted, cc.refused, flush=True)
server.shutdown(5)
"""


def test_out_of_file_descriptors_the_longest_idle_connection_makes_room(tmp_path):
    """A real process whose open-file limit (64) is far below max_connections (1024)."""
    import subprocess
    import sys

    pytest.importorskip("resource")
    child = subprocess.Popen([sys.executable, "-c", _LOW_LIMIT_SERVER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    idle = []
    try:
        port = int(child.stdout.readline())
        for _ in range(100):  # more than 64 descriptors' worth
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=CLIENT_GUARD))
        new = [socket.create_connection(("127.0.0.1", port), timeout=CLIENT_GUARD) for _ in range(5)]
        idle += new
        for n, sock in enumerate(new):
            sock.sendall(b"client %d\n" % n)
        assert [sock.makefile("rb").readline() for sock in new] == [b"CLIENT %d\n" % n for n in range(5)]
    finally:
        for sock in idle:
            sock.close()
        out, err = child.communicate(timeout=GUARD)
    evicted, refused = map(int, out.split())
    assert refused == 0 and evicted >= 105 - 64
    assert b"the open-file limit is 64, below max_connections=1024" in err
    assert child.returncode == 0, err


def test_a_client_that_reads_none_of_its_replies_is_closed_after_the_idle_timeout():
    def big(request: bytes, peer) -> bytes:
        return b"x" * 1_000_000 if request == b"big" else request.upper()

    with EventServer(big, idle_timeout=0.3) as server:
        with connect(server) as sock:
            sock.sendall(b"big\n" * 32)  # 32 MB of replies: far more than the socket buffers hold
            wait_until(lambda: server.connection_counters().idle_timeouts == 1, "closed for not reading")
            wait_until(lambda: server.connection_counters().open == 0, "closed")
        assert _answered(server, b"others are served") == b"OTHERS ARE SERVED\n"


def test_a_server_handed_to_use_is_listening_when_start_returns():
    """One rule for every component: live once use() returns. An explicit start() after use()
    (as examples/tcp_lines.py does) is harmless."""
    import socket as _socket

    from servicehost.config import HostConfig
    from servicehost.host import Host
    from servicehost.service import Service

    class Echo(Service):
        def start(self):
            self.server = self.use(EventServer(lambda line, peer: line, port=0))

    class Twice(Service):
        def start(self):
            self.server = self.use(EventServer(lambda line, peer: line, port=0))
            self.server.start()

    for cls in (Echo, Twice):
        service = cls()
        host = Host([service], HostConfig(shutdown_timeout=30))
        host.start()
        try:
            with _socket.create_connection(service.server.address, timeout=30) as c:
                c.sendall(b"hi\n")
                assert c.makefile("rb").readline() == b"hi\n"
        finally:
            host.request_stop()
            host.wait()


def test_every_model_imports_from_servicehost_workers():
    import servicehost
    import servicehost.workers as workers

    for name in workers.__all__:
        assert getattr(workers, name) is getattr(servicehost, name, getattr(workers, name))
    from servicehost.workers import EventServer as E  # noqa: N814

    assert E is EventServer
