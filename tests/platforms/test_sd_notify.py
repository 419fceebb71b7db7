"""sd_notify for real: a service process runs with ``NOTIFY_SOCKET`` pointing at a datagram socket
this test binds (with SO_PASSCRED, as systemd does), so every message arrives with the sender's
pid as the kernel saw it. No systemd is needed; test_systemd_real.py does the same under systemd.

What is checked, in one run of a small service: STATUS=starting and EXTEND_TIMEOUT_USEC while it
starts slowly; READY=1 only after the service called ready(); WATCHDOG=1 while workers heartbeat,
none while one hangs, again once it is released; STATUS= with live counters; RELOADING=1 then
READY=1 on SIGHUP; STOPPING=1 and EXTEND_TIMEOUT_USEC during an 8-task drain that finishes; every
message from the service's main pid; NOTIFY_SOCKET not passed on; journald priority prefixes.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from servicehost.errors import ExitCode
from servicehost.platforms.systemd import Notifier, watchdog_interval

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 60.0  # seconds: only against hangs; every step here takes well under 3 s

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sd_notify is Linux only")

SERVICE = '''
import os, threading, time
from pathlib import Path
from servicehost import Service, ThreadPool

class NotifyProbe(Service):
    name = "notifyprobe"
    ready_on_start = False

    def start(self):
        self.pool = self.use(ThreadPool(2, name="work", queue_size=64))
        self.release = threading.Event()
        self.log.info("environment after the platform took it: NOTIFY_SOCKET=%s WATCHDOG_USEC=%s",
                      os.environ.get("NOTIFY_SOCKET"), os.environ.get("WATCHDOG_USEC"))
        if os.environ.get("PROBE_FAIL_START"):
            raise RuntimeError("cannot start on purpose")
        threading.Timer(float(os.environ["PROBE_READY_AFTER"]), self.become_ready).start()

    def become_ready(self):
        (self.state_dir / "ready-called").write_text("yes")
        self.ready()

    def run(self, stop):
        hung = drained = False
        while not stop.wait(0.05):
            if not hung and (self.state_dir / "hang").exists():
                hung = True
                self.pool.submit(self.hang)
            if (self.state_dir / "release").exists():
                self.release.set()
            if not drained and (self.state_dir / "drain").exists():
                drained = True
                for i in range(8):
                    self.pool.submit(self.task, i)
                (self.state_dir / "accepted").write_text("8")

    def hang(self):
        self.release.wait()

    def task(self, i):
        time.sleep(0.5)
        with open(self.state_dir / "done", "a") as fh:
            fh.write(f"{i}\\n")

    def reload(self):
        self.log.info("reload hook ran")
'''


@dataclass
class Message:
    at: float
    pid: int
    fields: dict[str, str]


class NotifySocket:
    """A datagram socket like systemd's notify socket: records (pid, fields) of every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[Message] = []
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        creds_size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, creds_size)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:12])[0]
            fields = dict(line.partition("=")[::2] for line in data.decode().split("\n") if line)
            with self.changed:
                self.messages.append(Message(time.monotonic(), pid, fields))
                self.changed.notify_all()

    def wait_for(self, key: str, value: str | None = None, *, after: int = 0) -> int:
        """Index of the first message from ``after`` on carrying ``key`` (with ``value``)."""
        def found() -> int | None:
            for i, m in enumerate(self.messages[after:], after):
                if key in m.fields and (value is None or m.fields[key] == value):
                    return i
            return None
        with self.changed:
            self.changed.wait_for(lambda: found() is not None, HANG_GUARD)
            index = found()
        assert index is not None, f"no {key}={value} within {HANG_GUARD}s; got: {[m.fields for m in self.messages]}"
        return index

    def count(self, key: str, start: int = 0) -> int:
        return sum(key in m.fields for m in self.messages[start:])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    short = Path(tempfile.mkdtemp(prefix="sdn-"))  # sun_path is at most 107 bytes
    sock = NotifySocket(short / "notify")
    try:
        yield sock
    finally:
        sock.close()
        (short / "notify").unlink(missing_ok=True)
        short.rmdir()


def wait_until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + HANG_GUARD
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {HANG_GUARD}s"
        time.sleep(0.02)


def start_service(tmp_path: Path, notify: NotifySocket, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    """The probe service as systemd would run it: NOTIFY_SOCKET, WATCHDOG_USEC, and stderr that
    JOURNAL_STREAM names (a file here, so its lines can be read back)."""
    service = tmp_path / "notify_service.py"
    service.write_text(SERVICE)
    state = tmp_path / "state"
    state.mkdir()
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        return _spawn(service, state, stderr, notify, env), stderr_path


def _spawn(service: Path, state: Path, stderr: BinaryIO, notify: NotifySocket, env: dict[str, str]
           ) -> subprocess.Popen[bytes]:
    st = os.fstat(stderr.fileno())
    child_env = {
        **os.environ, "PYTHONPATH": str(ROOT / "src"), "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "600000", "INVOCATION_ID": "0123456789abcdef", "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        "PROBE_READY_AFTER": "1.5", **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "servicehost", "run", str(service), "--state-dir", str(state), "--log-file", "none",
         "--hang-timeout", "0.5", "--hang-policy", "report", "--shutdown-timeout", "30"],
        env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd=state.parent)


def test_a_service_tells_systemd_everything_from_its_main_pid(tmp_path, notify_socket):
    n = notify_socket
    proc, stderr_path = start_service(tmp_path, n)
    state = tmp_path / "state"

    def log() -> str:
        return stderr_path.read_text(errors="replace")

    try:
        # Starting: STATUS=starting and the start timeout extended while the service warms up.
        ready = n.wait_for("READY", "1")
        assert n.messages[0].fields.get("STATUS") == "starting" and "EXTEND_TIMEOUT_USEC" in n.messages[0].fields
        assert n.count("EXTEND_TIMEOUT_USEC", 0) - n.count("EXTEND_TIMEOUT_USEC", ready) >= 2
        assert (state / "ready-called").exists(), "READY=1 came before the service called ready()"
        assert n.messages[ready].fields["STATUS"].startswith("running; work: 0 done")

        # Running: the watchdog is fed; the status carries live counters.
        n.wait_for("WATCHDOG", "1", after=ready + 1)

        # Reload: RELOADING=1 (with the monotonic time systemd wants), the hook, READY=1.
        proc.send_signal(signal.SIGHUP)
        reloading = n.wait_for("RELOADING", "1", after=ready + 1)
        assert int(n.messages[reloading].fields["MONOTONIC_USEC"]) > 0
        n.wait_for("READY", "1", after=reloading + 1)
        wait_until(lambda: "reload hook ran" in log(), "the reload hook")

        # A hung worker: the watchdog is starved while it hangs, fed again once it is released.
        (state / "hang").write_text("")
        wait_until(lambda: "not feeding systemd's watchdog" in log(), "the starved-watchdog event")
        time.sleep(1.0)  # every datagram sent before the event has been received by now
        starved_from = len(n.messages)
        time.sleep(1.2)  # four watchdog ticks (WATCHDOG_USEC=0.6 s: one every 0.3 s)
        assert n.count("WATCHDOG", starved_from) == 0, "WATCHDOG=1 sent while a worker hung"
        (state / "release").write_text("")
        n.wait_for("WATCHDOG", "1", after=starved_from)
        wait_until(lambda: "workers heartbeat again" in log(), "the watchdog-fed event")

        # Stop with work queued: STOPPING=1 and EXTEND_TIMEOUT_USEC while the 8 tasks drain.
        (state / "drain").write_text("")
        wait_until(lambda: (state / "accepted").exists(), "the tasks accepted")
        proc.send_signal(signal.SIGTERM)
        stopping = n.wait_for("STOPPING", "1")
        assert "EXTEND_TIMEOUT_USEC" in n.messages[stopping].fields
        assert proc.wait(HANG_GUARD) == ExitCode.OK
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert sorted((state / "done").read_text().split()) == [str(i) for i in range(8)], "a queued task was lost"
    assert n.count("EXTEND_TIMEOUT_USEC", stopping + 1) >= 1, "no extension while draining"
    assert any(m.fields.get("STATUS", "").startswith("running; work: 1 done") for m in n.messages[ready:]), \
        "STATUS= never showed the live counters"

    # Every message came from the service's main pid, as NotifyAccess=main requires.
    assert {m.pid for m in n.messages} == {proc.pid}
    text = log()
    assert "NOTIFY_SOCKET=None WATCHDOG_USEC=None" in text  # not inherited by children (process pools)
    # stderr is the journal (JOURNAL_STREAM): every line the platform formats carries a priority.
    lines = [line for line in text.splitlines() if line]
    prefixed = [line for line in lines if line[:1] == "<"]
    assert prefixed and lines[-1] == prefixed[-1] and len(lines) - len(prefixed) <= 1  # only the cli's first line
    assert any(line.startswith("<3>ERROR") and "not feeding systemd's watchdog" in line for line in lines)
    assert any(line.startswith("<6>INFO") and "reload hook ran" in line for line in lines)


def test_a_failed_start_never_says_ready(tmp_path, notify_socket):
    proc, stderr_path = start_service(tmp_path, notify_socket, PROBE_FAIL_START="1")
    try:
        assert proc.wait(HANG_GUARD) == ExitCode.START_FAILURE
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until(lambda: any(m.fields.get("STATUS", "").startswith("failed") for m in notify_socket.messages),
               "STATUS=failed")
    fields = [m.fields for m in notify_socket.messages]
    states = [f["STATUS"].split(";")[0] for f in fields if "STATUS" in f]
    assert [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s] == ["starting", "stopping", "failed"]
    assert not any(f.get("READY") == "1" for f in fields), fields
    assert fields[0].get("STATUS") == "starting" and any(f.get("STOPPING") == "1" for f in fields)
    assert "cannot start on purpose" in stderr_path.read_text()


def test_an_abstract_notify_socket():
    name = f"servicehost-test-{os.getpid()}-{time.monotonic_ns()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(HANG_GUARD)
    try:
        notifier = Notifier("@" + name)
        assert notifier.notify("READY=1", "STATUS=hello")
        assert server.recv(4096) == b"READY=1\nSTATUS=hello"
        notifier.close()
        assert not notifier.notify("STATUS=after close")
    finally:
        server.close()


def test_notify_with_nobody_listening_is_not_an_error(tmp_path):
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.notify("READY=1") is False  # logged at debug, never raised into the host
    with pytest.raises(ValueError):
        notifier.notify("READY=1\nSTATUS=two lines")
    notifier.close()


def _event_ids(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [getattr(r, "event_id", 0) for r in caplog.records]


def test_each_way_of_not_telling_systemd_has_its_own_event(tmp_path, caplog):
    caplog.set_level("DEBUG", logger="servicehost")
    # A send that fails: the one meaning event 5003 keeps.
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.notify("READY=1") is False
    notifier.close()
    assert _event_ids(caplog) == [5003]
    caplog.clear()
    # NOTIFY_SOCKET that is not AF_UNIX: no notifications at all.
    env = {"NOTIFY_SOCKET": "vsock:2:1234"}
    assert Notifier.from_env(env) is None and "NOTIFY_SOCKET" not in env
    assert _event_ids(caplog) == [5410]
    caplog.clear()
    # WATCHDOG_USEC that is not a number: the watchdog is off.
    env = {"WATCHDOG_USEC": "soon", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) is None and not env
    assert _event_ids(caplog) == [5411]
    caplog.clear()
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None  # for another process
    assert _event_ids(caplog) == []
