"""The HTTP listener with real parts: a real Host and services, real sockets, real HTTP clients, and
real service processes (``servicehost run ... --http``). Time limits are hang guards only."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicehost import Deadline, Health, Host, HostConfig, HostState, Service, ThreadPool
from servicehost.errors import ExitCode
from servicehost.ops import health as health_mod
from servicehost.ops.http import HttpListener, host_allowed, parse_address, allowed_hosts
from servicehost.errors import ConfigError

from ..integration.proc import ServiceProcess, run_cli

HANG_GUARD = 30.0
APP = "tests/ops/ops_app.py"


# -- helpers --------------------------------------------------------------------------------------
def get(address: tuple[str, int], path: str, *, host: str | None = None, method: str = "GET",
        body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(address[0], address[1], timeout=HANG_GUARD)
    try:
        conn.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def until(predicate, what: str, guard: float = HANG_GUARD) -> None:
    """Wait (a hang guard, polling at a deadline) until ``predicate()`` is true."""
    deadline = Deadline.after(guard)
    while not predicate():
        if deadline.expired:
            raise AssertionError(f"never: {what}")
        time.sleep(0.02)


class Gate(Service):
    """A pool, a switchable readiness check, a start that can be held and a stop that can be held."""

    name = "Gate"
    ready_on_start = False

    def __init__(self) -> None:
        super().__init__()
        self.let_ready = threading.Event()
        self.let_stop = threading.Event()
        self.release_task = threading.Event()
        self.verdict: object = Health.HEALTHY
        self.check_calls = 0

    def start(self) -> None:
        self.pool = self.use(ThreadPool(2, name="pool"))
        self.health_check("gate", self.check, timeout=0.5, cache=0.0)
        threading.Thread(target=self._ready_later, daemon=True).start()

    def _ready_later(self) -> None:
        self.let_ready.wait(HANG_GUARD)
        self.ready()

    def check(self) -> object:
        self.check_calls += 1
        if self.verdict == "slow":
            self.release_task.wait(HANG_GUARD)
            return Health.HEALTHY
        return self.verdict

    def stop(self, deadline: Deadline) -> None:
        self.let_stop.wait(deadline.remaining(HANG_GUARD))

    def block(self) -> None:
        self.release_task.wait(HANG_GUARD)


class Served:
    """A host run as a platform runs it (start on a thread, wait on another), with its listener."""

    def __init__(self, service: Service, config: HostConfig, allowed: str = "") -> None:
        self.service = service
        self.host = Host([service], config)
        self.listener = HttpListener(self.host, "127.0.0.1:0", allowed).start()
        self.address = self.listener.address
        self.code: ExitCode | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.host.run()

    def status(self, path: str) -> int:
        return get(self.address, path)[0]

    def close(self) -> None:
        if not self.host.state.is_final:
            self.host.request_stop("test over")
        self.thread.join(HANG_GUARD)
        self.listener.close()


@pytest.fixture
def gate() -> Iterator[Served]:
    service = Gate()
    served = Served(service, HostConfig(shutdown_timeout=HANG_GUARD, hang_timeout=0.3, hang_policy="report"))
    yield served
    service.let_ready.set()
    service.let_stop.set()
    service.release_task.set()
    served.close()


# -- probes through the lifecycle -------------------------------------------------------------------
def test_readyz_is_503_while_starting_draining_and_stopping_and_200_when_running(gate):
    service, host = gate.service, gate.host
    until(lambda: host.state is HostState.STARTING, "starting")
    assert gate.status("/readyz") == 503
    assert gate.status("/livez") == 200  # starting is alive
    status, _, body = get(gate.address, "/readyz?verbose")
    assert status == 503 and b"[-]state failed: starting" in body and body.endswith(b"readyz check failed\n")

    service.let_ready.set()
    until(lambda: host.state is HostState.RUNNING, "running")
    status, _, body = get(gate.address, "/readyz")
    assert (status, body) == (200, b"ok\n")

    host.drain()
    assert gate.status("/readyz") == 503
    assert b"[-]state failed: draining" in get(gate.address, "/readyz?verbose")[2]
    assert gate.status("/livez") == 200
    host.resume()
    assert gate.status("/readyz") == 200

    host.pause()
    assert gate.status("/readyz") == 503  # paused takes no work: out of rotation (documented)
    host.resume()
    assert gate.status("/readyz") == 200

    host.request_stop("test: a stop held in stop()")
    until(lambda: host.state is HostState.STOPPING, "stopping")
    assert gate.status("/readyz") == 503
    assert b"[-]state failed: stopping" in get(gate.address, "/readyz?verbose")[2]
    assert gate.status("/livez") == 200  # stopping is alive: no restart in the middle of a drain
    service.let_stop.set()
    gate.thread.join(HANG_GUARD)
    assert gate.code is ExitCode.OK
    assert gate.status("/readyz") == 503  # stopped, and the listener still answers until it is closed


def test_readiness_checks_gate_readyz_degraded_passes_unhealthy_fails(gate):
    service = gate.service
    service.let_ready.set()
    until(lambda: gate.host.state is HostState.RUNNING, "running")
    service.verdict = (Health.DEGRADED, "replica lag 30s")
    status, _, body = get(gate.address, "/readyz?verbose")
    assert status == 200 and b"[+]gate degraded: replica lag 30s" in body
    service.verdict = (Health.UNHEALTHY, "db down")
    status, _, body = get(gate.address, "/readyz?verbose")
    assert status == 503 and b"[-]gate failed: db down" in body
    assert get(gate.address, "/readyz")[2] == b"readyz check failed\n"
    assert gate.status("/readyz?exclude=gate") == 200
    assert gate.status("/livez") == 200  # a readiness check never fails liveness
    service.verdict = False
    assert gate.status("/readyz") == 503
    service.verdict = None
    assert gate.status("/readyz") == 200
    document = json.loads(get(gate.address, "/status")[2])
    assert document["checks"][0]["name"] == "gate" and document["checks"][0]["health"] == "healthy"
    assert document["accepting"] is True and document["state"] == "running"


def test_a_check_that_does_not_answer_is_unhealthy_after_its_timeout_and_runs_once_at_a_time(gate):
    service = gate.service
    service.let_ready.set()
    until(lambda: gate.host.state is HostState.RUNNING, "running")
    calls = service.check_calls
    service.verdict = "slow"
    status, _, body = get(gate.address, "/readyz?verbose")
    assert status == 503 and b"[-]gate failed: timed out" in body
    for _ in range(3):  # the run under way is waited for again, never started a second time
        assert gate.status("/readyz") == 503
    assert service.check_calls == calls + 1
    # /livez and /status never wait for a readiness check
    assert gate.status("/livez") == 200
    assert json.loads(get(gate.address, "/status")[2])["checks"][0]["health"] == "unhealthy"
    service.verdict = Health.HEALTHY
    service.release_task.set()
    until(lambda: gate.status("/readyz") == 200, "the slow check answered")


def test_livez_fails_while_a_worker_hangs_past_hang_timeout_and_recovers(gate):
    service = gate.service
    service.let_ready.set()
    until(lambda: gate.host.state is HostState.RUNNING, "running")
    assert gate.status("/livez") == 200
    service.pool.submit(service.block)
    until(lambda: gate.status("/livez") == 503, "livez failing for the hung worker")
    status, _, body = get(gate.address, "/livez?verbose")
    assert status == 503 and re.search(rb"\[-\]heartbeat failed: pool/\S+ busy \d+s in .*block", body)
    assert gate.status("/readyz") == 200  # liveness is not readiness
    service.release_task.set()
    until(lambda: gate.status("/livez") == 200, "livez passing again")


def test_liveness_checks_gate_livez_only():
    class Live(Service):
        def start(self) -> None:
            self.ok = True
            self.health_check("deadlock", lambda: self.ok, tags=("live",), cache=0)

    service = Live()
    served = Served(service, HostConfig(shutdown_timeout=5))
    try:
        until(lambda: served.host.state is HostState.RUNNING, "running")
        assert served.status("/livez") == 200
        service.ok = False
        status, _, body = get(served.address, "/livez?verbose")
        assert status == 503 and b"[-]deadlock failed: the check returned False" in body
        assert served.status("/readyz") == 200
    finally:
        served.close()


# -- what the listener refuses ----------------------------------------------------------------------
def test_dns_rebinding_a_foreign_host_header_is_refused():
    served = Served(Service(), HostConfig(shutdown_timeout=5), allowed="prometheus.internal")
    try:
        until(lambda: served.host.state is HostState.RUNNING, "running")
        port = served.address[1]
        for name in ("evil.test", f"evil.test:{port}", "localhost.evil.test", "127.0.0.1.evil.test"):
            status, headers, body = get(served.address, "/status", host=name)
            assert status == 403, name
            assert b"pid" not in body
        for name in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}",
                     f"PROMETHEUS.internal:{port}", "10.1.2.3:80"):
            assert get(served.address, "/status", host=name)[0] == 200, name
    finally:
        served.close()
    assert host_allowed("evil.test", allowed_hosts("*"))
    assert not host_allowed("", frozenset())


def test_only_get_and_head_no_bodies_and_every_answer_is_uncached_and_framed():
    served = Served(Service(), HostConfig(shutdown_timeout=5))
    try:
        until(lambda: served.host.state is HostState.RUNNING, "running")
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            status, headers, _ = get(served.address, "/status", method=method, body=b"{}")
            assert status == 405 and headers["allow"] == "GET, HEAD", method
        status, headers, body = get(served.address, "/status", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        for path in ("/", "/status", "/readyz", "/livez", "/page.js", "/nothing"):
            status, headers, _ = get(served.address, path)
            assert headers["cache-control"] == "no-store", path
            assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
            assert headers["content-security-policy"].startswith("default-src 'none'"), path
        assert get(served.address, "/nothing")[0] == 404
        assert "script-src 'self'" in get(served.address, "/")[1]["content-security-policy"]
        # a chunked body, or a head larger than 8 KiB: the connection is closed, nothing is served
        for raw in (b"POST /status HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                    b"GET /status HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
                    b"GET /status HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"):
            with socket.create_connection(served.address, timeout=HANG_GUARD) as sock:
                sock.sendall(raw)
                assert recv_all(sock) == b""
        for raw in (b"NONSENSE\r\n\r\n", b"GET /status HTTP/1.1\r\n\r\n"):  # not HTTP; 1.1 without Host
            with socket.create_connection(served.address, timeout=HANG_GUARD) as sock:
                sock.sendall(raw)
                assert recv_all(sock).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(served.address, timeout=HANG_GUARD) as sock:  # 1.0 may omit it
            sock.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
            answer = recv_all(sock)
            assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer
        # keep-alive: two requests on one connection, answered in order
        with socket.create_connection(served.address, timeout=HANG_GUARD) as sock:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nothing HTTP/1.1\r\nHost: localhost\r\n"
                         b"Connection: close\r\n\r\n")
            answer = recv_all(sock)
            assert answer.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 404 Not Found" in answer
    finally:
        served.close()


def recv_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
        if out.count(b"Connection: close") and out.endswith(b"\n"):
            break
    return out


def test_idle_and_dripping_clients_do_not_keep_others_waiting():
    served = Served(Service(), HostConfig(shutdown_timeout=5))
    idle: list[socket.socket] = []
    try:
        until(lambda: served.host.state is HostState.RUNNING, "running")
        for _ in range(100):  # more than max_connections (64): the longest-idle make room
            idle.append(socket.create_connection(served.address, timeout=HANG_GUARD))
        drip = socket.create_connection(served.address, timeout=HANG_GUARD)
        idle.append(drip)
        for byte in b"GET /status HTTP/1.1\r\nHost: loc":  # a request that never finishes
            drip.send(bytes([byte]))
        for _ in range(20):
            assert get(served.address, "/livez")[0] == 200
    finally:
        for sock in idle:
            sock.close()
        served.close()


# -- parsing the setting ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("9100", ("127.0.0.1", 9100)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:9100", ("::1", 9100)),
    ("localhost:0", ("localhost", 0)),
])
def test_http_addresses(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "x", "127.0.0.1:", ":80", "::1:80", "1.2.3.4:65536", "a b:80", "h:-1", "h:８０"])
def test_bad_http_addresses_name_the_setting(text):
    with pytest.raises(ConfigError, match="http"):
        parse_address(text)


def test_health_check_declarations_are_checked(caplog):
    service = Service()
    with pytest.raises(ValueError, match="tags"):
        service.health_check("x", lambda: True, tags=("readiness",))
    with pytest.raises(ValueError, match="timeout"):
        service.health_check("x", lambda: True, timeout=0)
    service.health_check("x", lambda: True)
    with pytest.raises(ValueError, match="exists already"):
        service.health_check("x", lambda: True)
    check = health_mod.HealthCheck("odd", lambda: 42)
    with caplog.at_level("INFO", logger="servicehost.ops"):
        result = check.result()
    assert result.health is Health.UNHEALTHY and "TypeError" in result.detail
    assert [r.getMessage() for r in caplog.records if getattr(r, "event_id", 0) == 6010] == [
        f"health check odd: first run -> unhealthy ({result.detail})"]
    assert health_mod.HealthCheck("fine", lambda: None).result().health is Health.HEALTHY  # not logged
    assert [r for r in caplog.records if getattr(r, "event_id", 0) == 6011] == []


# -- a real service process ------------------------------------------------------------------------
def test_a_real_run_serves_the_probes_until_it_has_stopped(tmp_path):
    with ServiceProcess("run", APP, "--http", "127.0.0.1:0", "--gate", str(tmp_path), "--log-file", "none",
                        "--state-dir", str(tmp_path / "state")) as proc:
        port = int(proc.expect(r"HTTP listener on http://127\.0\.0\.1:(\d+)/").group(1))
        address = ("127.0.0.1", port)
        proc.ready()
        assert get(address, "/readyz")[0] == 200 and get(address, "/livez")[0] == 200
        document = json.loads(get(address, "/status")[2])
        assert document["name"] == "OpsApp" and document["version"] == "1.2.3"
        assert {c["name"] for c in document["counters"]} == {"pool", "ticker"}
        (tmp_path / "unready").touch()
        status, _, body = get(address, "/readyz?verbose")
        assert status == 503 and b"[-]gate failed: the unready file exists" in body
        proc.expect(r"health check gate: healthy -> unhealthy")
        (tmp_path / "unready").unlink()
        assert get(address, "/readyz")[0] == 200
        for _ in range(3):  # DNS rebinding: refused each time, logged once
            assert get(address, "/status", host="evil.test")[0] == 403
        proc.expect(r"HTTP: refused GET /status from 127\.0\.0\.1:\d+: Host 'evil\.test' is not allowed")
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        assert sum("Host 'evil.test'" in line for line in proc.output()) == 1
    with pytest.raises(OSError):
        get(address, "/livez")


def test_a_bad_http_setting_exits_2_and_a_taken_port_exits_3(tmp_path):
    result = run_cli("run", APP, "--http", "nonsense:port", "--log-file", "none", "--state-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "http" in result.stderr.splitlines()[-1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", APP, "--http", f"127.0.0.1:{port}", "--log-file", "none", "--state-dir", str(tmp_path))
    assert result.returncode == 3, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr.splitlines()[-1] and "in use" in result.stderr


def test_no_listener_and_no_import_without_the_setting():
    code = ("import servicehost, sys; assert not [m for m in sys.modules if 'ops.http' in m or 'http.server' in m]; "
            "print('ok')")
    import subprocess
    import sys

    from ..integration.proc import ROOT, env

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True,
                         timeout=HANG_GUARD)
    assert out.stdout.strip() == "ok", out.stderr


def test_a_real_run_readyz_follows_drain_resume_and_a_slow_stop(tmp_path):
    """``servicehost drain NAME``/``resume NAME`` on the run's control channel, and a stop that waits for
    a running task: /readyz says 503 throughout each, 200 after resume; /livez stays 200."""
    import os

    name = f"opshttp{os.getpid() % 100000}"
    with ServiceProcess("run", APP, "--name", name, "--http", "127.0.0.1:0", "--gate", str(tmp_path),
                        "--log-file", "none", "--state-dir", str(tmp_path / "state"),
                        "--shutdown-timeout", str(HANG_GUARD)) as proc:
        address = ("127.0.0.1", int(proc.expect(r"HTTP listener on http://127\.0\.0\.1:(\d+)/").group(1)))
        proc.ready()
        until(lambda: run_cli("status", name).returncode == 0, "the control channel answering")
        assert get(address, "/readyz")[0] == 200
        drained = run_cli("drain", name, "--wait", str(HANG_GUARD))
        assert drained.returncode == 0, drained.stderr
        status, _, body = get(address, "/readyz?verbose")
        assert status == 503 and b"[-]state failed: draining" in body
        assert get(address, "/livez")[0] == 200
        assert json.loads(get(address, "/status")[2])["accepting"] is False
        assert run_cli("resume", name).returncode == 0
        assert get(address, "/readyz")[0] == 200

        (tmp_path / "hang").touch()  # the next task runs until the file is gone: the stop waits for it
        until(lambda: any(c["in_flight"] for c in json.loads(get(address, "/status")[2])["counters"]
                          if c["name"] == "pool"), "a task running")
        proc.signal(signal.SIGTERM)
        try:
            until(lambda: json.loads(get(address, "/status")[2])["state"] == "stopping", "stopping")
        except AssertionError:  # say where every thread is (SIGUSR2: faulthandler's dump on stderr)
            proc.signal(signal.SIGUSR2)
            try:
                proc.expect(r"Thread 0x|Current thread", timeout=5)
            except AssertionError:
                pass
            raise AssertionError("never stopping:\n" + get(address, "/status")[2].decode() + "\n" +
                                 "\n".join(proc.output())) from None
        status, _, body = get(address, "/readyz?verbose")
        assert status == 503 and b"[-]state failed: stopping" in body
        assert get(address, "/livez")[0] == 200
        (tmp_path / "hang").unlink()
        assert proc.wait() == 0
