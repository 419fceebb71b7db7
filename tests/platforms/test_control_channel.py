"""The control channel with real parts: a real Host and services, a real AF_UNIX socket, real peer
credentials, and a real process of another uid (nobody) that must be refused."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
from pathlib import Path

import pytest

from servicehost import Host, HostConfig, HostState, Service, ThreadPool
from servicehost.errors import ExitCode, StartupError, UsageError
from servicehost.platforms import control
from servicehost.platforms.control import (
    COMMANDS,
    ControlChannelError,
    ControlServer,
    ControlUnavailable,
    Request,
)
from servicehost.platforms.control_client import ControlClient

from ..conftest import IN_CI

HANG_GUARD = 30.0
NOBODY = 65534


class Recorder(Service):
    """Records every hook the control channel reaches; runs a pool so status has counters."""

    name = "Recorder"

    def start(self) -> None:
        self.calls: list[str] = []
        self.pool = self.use(ThreadPool(2, name="pool"))

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def reload(self) -> None:
        self.calls.append("reload")

    def control(self, code: int) -> None:
        self.calls.append(f"control {code}")


class Running:
    """A host started on this thread and waited for on another, as a platform's run() does."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.host = Host([service], HostConfig(shutdown_timeout=10))
        self.code: ExitCode | None = None
        self.host.start()
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        self.code = self.host.wait()

    def stop(self) -> ExitCode | None:
        self.host.request_stop("test over")
        return self.exit_code()

    def exit_code(self) -> ExitCode | None:
        """What ``wait()`` returned, once it has (the host reaches STOPPED a moment before)."""
        self._waiter.join(HANG_GUARD)
        assert not self._waiter.is_alive(), "the host did not stop"
        return self.code


@pytest.fixture
def base():
    """A short private directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="shc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def running():
    run = Running(Recorder())
    yield run
    if not run.host.state.is_final:
        run.stop()


# -- where the socket lives: a pure function of the name, the environment and the uid ---------------
def test_runtime_dir_is_derived_from_name_env_and_uid():
    assert control.socket_path("svc", {}, 0) == Path("/run/servicehost/svc/control.sock")
    assert control.runtime_dir("svc", {"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000) == \
        Path("/run/user/1000/servicehost/svc")
    assert control.runtime_dir("svc", {}, 1000) == Path("/tmp/servicehost-1000/svc")
    # a manager that prepares the directory says where, for root and users alike
    assert control.runtime_dir("svc", {"SERVICEHOST_RUNTIME_DIR": "/srv/r", "XDG_RUNTIME_DIR": "/x"}, 0) == \
        Path("/srv/r/svc")


@pytest.mark.parametrize("name", ["", "..", "a/b", "../etc", "-x", "a b", "x" * 200])
def test_names_that_are_not_safe_directory_names_are_refused(name):
    with pytest.raises(UsageError, match="--name"):
        control.runtime_dir(name, {}, 0)


# -- the commands, end to end -------------------------------------------------------------------------
def test_pause_continue_control_reload_reach_the_services_hooks(base, running):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        client = ControlClient(path)
        ping = client.call("ping")
        assert ping == {"pid": os.getpid(), "name": "Recorder", "state": "running", "ready": True}
        assert client.call("pause")["state"] == "paused"
        assert running.host.state is HostState.PAUSED
        assert client.call("resume")["state"] == "running"
        client.call("control", code=200)
        client.call("reload")
        assert running.service.calls == ["pause", "resume", "control 200", "reload"]
    assert not path.exists(), "the socket is removed when the server closes"


def test_status_reports_state_uptime_and_the_workers_counters(base, running):
    done = [running.service.pool.submit_result(pow, 2, n) for n in range(10)]
    assert [r.result(HANG_GUARD) for r in done] == [2 ** n for n in range(10)]
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        status = ControlClient(path).call("status")
    assert status["state"] == "running" and status["ready"] is True and status["healthy"] is True
    assert status["uptime"] >= 0
    (pool,) = status["counters"]
    assert pool["name"] == "pool" and pool["completed"] == 10 and pool["failed"] == 0
    assert status["status_line"].startswith("running; pool: 10 done")


def test_stop_stops_the_host_cleanly(base, running):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        ControlClient(path).call("stop")
        assert running.host.lifecycle.wait_for({HostState.STOPPED}, HANG_GUARD)
    assert running.exit_code() is ExitCode.OK


def test_refusals_say_why_and_leave_the_service_as_it_was(base, running):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        client = ControlClient(path)
        with pytest.raises(ControlChannelError, match=r"resume: the service is running, not paused"):
            client.call("resume")
        with pytest.raises(ControlChannelError, match=r"custom control codes are 128-255, got 5"):
            client.call("control", code=5)
        with pytest.raises(ControlChannelError, match=r"integer code"):
            client.call("control", code="200")
        with pytest.raises(ControlChannelError, match=r"unknown command 'explode'; known: .*control, .*pause, .*ping"):
            client.call("explode")
        client.call("pause")
        with pytest.raises(ControlChannelError, match=r"pause: the service is paused, not running"):
            client.call("pause")
        assert running.host.state is HostState.PAUSED
        assert running.service.calls == ["pause"]


def test_a_command_table_can_be_extended_without_touching_the_server(base, running):
    def echo(req: Request) -> object:
        return {"echo": req.args["text"], "peer_uid": req.peer.uid}

    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path, commands={**COMMANDS, "echo": echo}):
        assert ControlClient(path).call("echo", text="hi") == {"echo": "hi", "peer_uid": os.geteuid()}
    assert "echo" not in COMMANDS  # the shared table is not changed


def test_a_broken_peer_does_not_stop_the_channel(base, running):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        with socket.socket(socket.AF_UNIX) as raw:  # a length far over the limit
            raw.settimeout(HANG_GUARD)
            raw.connect(str(path))
            raw.sendall(struct.pack(">I", 10 ** 9))
            assert "over the 65536-byte limit" in _reply(raw)["error"]
            assert raw.recv(10) == b""  # then dropped: its framing is lost
        with socket.socket(socket.AF_UNIX) as raw:  # not JSON
            raw.settimeout(HANG_GUARD)
            raw.connect(str(path))
            raw.sendall(struct.pack(">I", 3) + b"{{{")
            assert "not JSON" in _reply(raw)["error"]
        with socket.socket(socket.AF_UNIX) as raw:  # several requests on one connection
            raw.connect(str(path))
            for _ in range(2):
                body = json.dumps({"command": "ping"}).encode()
                raw.sendall(struct.pack(">I", len(body)) + body)
                size = struct.unpack(">I", raw.recv(4))[0]
                assert json.loads(raw.recv(size))["ok"] is True
        assert ControlClient(path).call("ping")["ready"] is True


# -- the directory and the socket file -----------------------------------------------------------------
def test_directory_is_private_before_the_socket_exists_and_tightened_if_wider(base, running):
    own = base / "Recorder"
    own.mkdir(mode=0o777)
    os.chmod(own, 0o777)  # left wide open by someone: tightened before binding
    with ControlServer(running.host, own / "control.sock") as server:
        assert stat.S_IMODE(os.stat(own).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
    with ControlServer(running.host, own / "control.sock", group_access=True) as server:
        assert stat.S_IMODE(os.stat(own).st_mode) == 0o750
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(base, running, caplog):
    path = base / "Recorder" / "control.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a kill -9 leaves behind
    with caplog.at_level(logging.INFO, "servicehost"):
        with ControlServer(running.host, path):
            assert ControlClient(path).call("ping")["ready"]
            second = Running(Recorder())
            try:
                with pytest.raises(StartupError, match=rf"another process \(pid {os.getpid()}\) already serves"):
                    ControlServer(second.host, path).start()
            finally:
                second.stop()
            assert ControlClient(path).call("ping")["ready"], "the first server still serves"
    assert any(getattr(r, "event_id", 0) == 5205 for r in caplog.records)


def test_a_directory_owned_by_someone_else_is_refused(base, running):
    if os.geteuid() != 0:
        reason = "giving a directory to another uid needs root; CI runs as root"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    own = base / "Recorder"
    own.mkdir(mode=0o700)
    os.chown(own, NOBODY, NOBODY)
    with pytest.raises(StartupError, match=rf"belongs to uid {NOBODY}, not to this service's uid 0"):
        ControlServer(running.host, own / "control.sock").start()
    link = base / "Other"
    link.symlink_to(base / "elsewhere")
    with pytest.raises(StartupError, match="not a directory"):
        ControlServer(running.host, link / "control.sock").start()


def test_the_client_says_when_nothing_listens(base):
    with pytest.raises(ControlUnavailable, match=r"no service answers at .*not running"):
        ControlClient(base / "Nobody" / "control.sock").call("ping")


def test_ready_marker_holds_the_pid_only_while_ready(base):
    service = Recorder()
    host = Host([service], HostConfig(shutdown_timeout=10))
    server = ControlServer(host, base / "Recorder" / "control.sock")
    server.start()
    try:
        assert not server.marker.exists()  # CREATED: not ready
        host.start()
        assert server.marker.read_text() == f"{os.getpid()}\n"
        host.request_stop("test")
        assert host.wait() is ExitCode.OK
        assert not server.marker.exists()
    finally:
        server.close()


# -- another uid ----------------------------------------------------------------------------------------
def _as_nobody(path: Path) -> dict[str, object]:
    """Fork a child that becomes uid 65534 (nobody) and asks ``path`` to pause; what it saw.

    The child only makes system calls and writes a prepared answer (it was forked from a process
    with threads, so it must not take locks); the interpreter itself is not reachable for nobody
    here (/root/.pyenv), so a fresh process of that uid is not an option."""
    body = json.dumps({"command": "pause"}).encode()
    request = struct.pack(">I", len(body)) + body
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python-level locks, no logging, leave with os._exit
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(HANG_GUARD)
            try:
                s.connect(str(path))
            except PermissionError:
                os.write(write_end, b"E")
            else:
                s.sendall(request)
                head = s.recv(4)
                reply = s.recv(struct.unpack(">I", head)[0])
                os.write(write_end, b"R" + reply)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed before it could report"
    if out == b"E":
        return {"connect": "PermissionError"}
    assert out[:1] == b"R", out
    return {"reply": json.loads(out[1:])}


def test_another_uid_is_refused_by_the_directory_and_by_its_credentials(base, running, caplog):
    if os.geteuid() != 0:
        reason = "needs root to run a peer as uid 65534 (nobody); CI runs as root"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    os.chmod(base, 0o755)
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        # 1. the runtime directory (0700) keeps other users away from the socket
        assert _as_nobody(path) == {"connect": "PermissionError"}
        # 2. opened up by mistake, the server still refuses them by SO_PEERCRED
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o777)
        with caplog.at_level(logging.WARNING, "servicehost"):
            reply = _as_nobody(path)["reply"]
        error = f"uid {NOBODY} may not control this service: only root and uid 0 may"
        assert reply == {"ok": False, "error": error}
        assert running.host.state is HostState.RUNNING and running.service.calls == []
        refused = [r for r in caplog.records if getattr(r, "event_id", 0) == 5202]
        assert refused and f"(uid {NOBODY})" in refused[0].getMessage()
        assert ControlClient(path).call("ping")["ready"], "root is still served"


def test_the_client_refuses_a_server_of_an_unexpected_uid(base, running):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        with pytest.raises(ControlChannelError, match=rf"served by uid {os.geteuid()}, not by the service's"):
            ControlClient(path, server_uids=frozenset({os.geteuid() + 1})).call("ping")


# -- issue 7, item 8: hostile frames and peers never take the channel down ------------------------------
def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _reply(raw: socket.socket) -> dict:
    """Read one length-prefixed reply from a raw socket (hang guard: its timeout)."""
    reader = raw.makefile("rb")
    head = reader.read(4)
    assert len(head) == 4, f"no reply, got {head!r}"
    return json.loads(reader.read(struct.unpack(">I", head)[0]))


def test_a_deeply_nested_frame_is_refused_and_pause_status_stop_still_work(base, running):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path):
        # 100,000 deep: 200 kB, refused from its length header alone, with a reply
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(HANG_GUARD)
            raw.connect(str(path))
            try:
                raw.sendall(_frame(b"[" * 100_000 + b"]" * 100_000))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered from the header and closed: the reply is still there
            reply = _reply(raw)
            assert reply["ok"] is False and "over the 65536-byte limit" in reply["error"]
        # 30,000 deep inside the size limit: refused before parsing, and the connection goes on
        deep = b'{"command":"ping","args":{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}}"
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(HANG_GUARD)
            raw.connect(str(path))
            raw.sendall(_frame(deep))
            reply = _reply(raw)
            assert reply["ok"] is False and "nested deeper than" in reply["error"]
            raw.sendall(_frame(b'{"command":"ping"}'))
            assert _reply(raw)["ok"] is True
        client = ControlClient(path, timeout=HANG_GUARD)
        assert client.call("pause")["state"] == "paused"
        assert client.call("status")["state"] == "paused"
        assert client.call("resume")["state"] == "running"
        client.call("stop")
        assert running.host.lifecycle.wait_for({HostState.STOPPED}, HANG_GUARD)
    assert running.exit_code() is ExitCode.OK


@pytest.mark.parametrize("body, says", [
    (b"{{{", "not JSON"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"[1, 2]", "JSON object"),
    (b'{"command": "ping", "args": ' + b"9" * 60_000 + b"}", "not JSON"),
    (b'{"command": "ping", "args": []}', "args must be a JSON object"),
])
def test_a_bad_frame_gets_an_error_reply_and_the_connection_goes_on(base, running, body, says):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path), socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(HANG_GUARD)
        raw.connect(str(path))
        raw.sendall(_frame(body))
        reply = _reply(raw)
        assert reply["ok"] is False and says in reply["error"]
        raw.sendall(_frame(b'{"command":"ping"}'))
        assert _reply(raw)["result"]["ready"] is True


def test_a_handler_whose_result_cannot_be_sent_gets_an_error_reply(base, running):
    def raising(req: Request) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    commands = {**COMMANDS, "odd": lambda req: {1, 2}, "huge": lambda req: "x" * control.MAX_REPLY, "deep": raising}
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path, commands=commands):
        client = ControlClient(path, timeout=HANG_GUARD)
        with pytest.raises(ControlChannelError, match="odd: its result cannot be sent"):
            client.call("odd")
        with pytest.raises(ControlChannelError, match="huge: its result cannot be sent: .*over the 1048576-byte"):
            client.call("huge")
        with pytest.raises(ControlChannelError, match="RecursionError"):
            client.call("deep")
        assert client.call("ping")["ready"] is True


def test_an_oversized_length_header_is_refused_before_any_body_is_read_or_allocated(base, running):
    import tracemalloc

    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path), socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(HANG_GUARD)
        raw.connect(str(path))
        tracemalloc.start()
        try:
            raw.sendall(struct.pack(">I", 0xFFFF_FFFF))  # 4 GiB announced, nothing sent after it
            reply = _reply(raw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert reply == {"ok": False, "error": (
            "control message of 4294967295 bytes is over the 65536-byte limit; closing the connection")}
        assert peak < 1 << 20  # nothing near the announced size was allocated
        assert raw.recv(10) == b""  # the framing is lost: the server closed


def _drip(path: Path, stop: threading.Event, every: float) -> tuple[socket.socket, threading.Thread]:
    """A peer announcing a 100-byte request and sending it one byte at a time."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(HANG_GUARD)
    sock.connect(str(path))
    data = _frame(b" " * 100)

    def drip() -> None:
        try:
            for i in range(len(data)):
                if stop.wait(every):
                    return
                sock.send(data[i:i + 1])
        except OSError:
            pass  # the server gave up on it

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    return sock, t


def test_a_silent_peer_and_a_dripper_do_not_hold_up_legitimate_requests(base, running):
    path = base / "Recorder" / "control.sock"
    stop = threading.Event()
    with ControlServer(running.host, path) as server:
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(str(path))
        dripper, t = _drip(path, stop, 0.5)
        try:
            control_wait(lambda: server.open_connections == 2, "both peers accepted")
            client = ControlClient(path, timeout=HANG_GUARD / 3)  # the old server held these for 50 s
            for _ in range(5):
                assert client.call("ping")["ready"] is True
            control_wait(lambda: server.open_connections <= 2, "the pings' connections ended")
        finally:
            stop.set()
            silent.close()
            dripper.close()
            t.join(HANG_GUARD)


def test_the_peer_timeout_covers_the_whole_request_not_each_read(base, running):
    path = base / "Recorder" / "control.sock"
    stop = threading.Event()
    with ControlServer(running.host, path, peer_timeout=1.0):
        dripper, t = _drip(path, stop, 0.1)  # 104 bytes at 10/s: would take 10 s
        try:
            reply = _reply(dripper)  # hang guard: HANG_GUARD
            assert reply["ok"] is False and "not complete within 1s" in reply["error"]
            try:  # closed: an end of file, or a reset when the drip's last bytes were still unread
                rest = dripper.recv(10)
            except ConnectionResetError:
                rest = b""
            assert rest == b""
        finally:
            stop.set()
            dripper.close()
            t.join(HANG_GUARD)


def test_connections_beyond_the_limit_are_refused_with_a_reply_and_served_again_later(base, running):
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path, max_connections=2, peer_timeout=0.5) as server:
        silent = [socket.socket(socket.AF_UNIX) for _ in range(2)]
        for sock in silent:
            sock.connect(str(path))
        control_wait(lambda: server.open_connections == 2, "both silent peers accepted")
        with pytest.raises(ControlChannelError, match="busy: 2 control connections are open"):
            ControlClient(path, timeout=HANG_GUARD).call("ping")
        control_wait(lambda: server.open_connections == 0, "the silent peers timed out")
        assert ControlClient(path, timeout=HANG_GUARD).call("ping")["ready"] is True
        for sock in silent:
            sock.close()


def test_the_client_gives_up_on_a_dripping_server_within_its_timeout(base):
    path = base / "fake.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            reply = _frame(json.dumps({"ok": True, "result": "x" * 100}).encode())
            for i in range(len(reply)):
                if stop.wait(0.1):
                    return
                try:
                    conn.send(reply[i:i + 1])
                except OSError:
                    return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(ControlChannelError, match="no answer from .* within 1s"):
            ControlClient(path, timeout=1.0).call("ping")  # each byte comes within 0.1 s
    finally:
        stop.set()
        t.join(HANG_GUARD)
        listener.close()


def control_wait(predicate, what: str) -> None:
    import time

    end = time.monotonic() + HANG_GUARD
    while not predicate():
        assert time.monotonic() < end, f"hang guard: {what}"
        time.sleep(0.01)


# An idle service's channel loads no JSON codec until someone asks (``bench/run.py``'s rss row).
IDLE_CHANNEL = """
import socket, sys, tempfile, threading
from pathlib import Path
from servicehost import Host, HostConfig, Service
from servicehost.platforms.control import ControlServer

class Quiet(Service):
    name = "Quiet"

host = Host([Quiet()], HostConfig(shutdown_timeout=10))
host.start()
path = Path(tempfile.mkdtemp(prefix="shc-")) / "Quiet" / "control.sock"
with ControlServer(host, path):
    before = "json" in sys.modules or "struct" in sys.modules
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        body = b'{"command":"status","args":{}}'
        sock.sendall(len(body).to_bytes(4, "big") + body)
        head = sock.recv(4)
        size = int.from_bytes(head, "big")
        reply = b""
        while len(reply) < size:
            reply += sock.recv(size - len(reply))
    after = "json" in sys.modules
host.request_stop("test over")
host.wait()
print(before, after, b'"state":"running"' in reply)
"""


def test_an_idle_channel_loads_no_json_until_a_request_comes():
    import subprocess
    import sys

    from ..integration.proc import ROOT, env

    out = subprocess.run([sys.executable, "-c", IDLE_CHANNEL], cwd=ROOT, env=env(), capture_output=True, text=True,
                         timeout=HANG_GUARD * 2)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr
