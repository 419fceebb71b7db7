"""The command line's habits in a real process (issue 10 items 5, 7, 8): what ``run``/``debug``
say about where they run and where they keep their files, and Ctrl-C as a terminal delivers it.
Timeouts are hang guards only."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from servicehost.errors import ExitCode
from servicehost.platforms.base import wait_until
from servicehost.platforms.foreground import REPEAT_WINDOW
from servicehost.stopping import Deadline

from .proc import HANG_GUARD, ServiceProcess
from .proc import env as proc_env


def until(predicate: Callable[[], object], what: str) -> None:
    wait_until(predicate, Deadline.after(HANG_GUARD), lambda: AssertionError(f"hang guard: {what}"))


SLOW_DRAIN = '''
"""A task runs until the file ``release`` appears in the state dir (at most 30 s: a hang guard):
a graceful stop waits for it (exit 0); a forced one leaves it unfinished (exit 4)."""
import time
from servicehost import Service, ThreadPool


class SlowDrain(Service):
    def start(self):
        self.pool = self.use(ThreadPool(1, name="slow"))
        self.pool.submit(self.work)

    def work(self):
        for _ in range(600):
            if (self.state_dir / "release").exists():
                return
            time.sleep(0.05)

    def stop(self, deadline):
        self.log.info("slow: stopping, the task still runs")
'''


def _service(tmp_path: Path) -> str:
    path = tmp_path / "slow_drain.py"
    path.write_text(SLOW_DRAIN)
    return str(path)


def test_debug_says_it_runs_in_the_foreground_whatever_manager_is_set(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "release").touch()  # its task ends at once
    with ServiceProcess("debug", _service(tmp_path), "--state-dir", str(state),
                        SERVICEHOST_MANAGER="systemd") as svc:
        svc.ready()
        svc.signal(signal.SIGTERM)
        svc.wait()
        out = "\n".join(svc.output())
    assert "running under foreground (debug runs in the foreground)" in out
    assert "--manager" not in out


def test_two_ctrl_c_at_once_are_one_stop_and_a_later_one_forces_it(tmp_path):
    target, state = _service(tmp_path), tmp_path / "state"
    state.mkdir()
    with ServiceProcess("debug", target, "--state-dir", str(state)) as svc:
        svc.ready()
        svc.signal(signal.SIGINT)  # a process group's Ctrl-C: the same signal twice, at once
        svc.signal(signal.SIGINT)
        svc.expect(r"slow: stopping")  # a second request would have forced the stop (exit 4) by now
        (state / "release").touch()
        assert svc.wait() == ExitCode.OK  # graceful: the running task was waited for
        out = "\n".join(svc.output())
    assert "stop forced" not in out and out.count("stop requested") == 1
    (state / "release").unlink()

    with ServiceProcess("debug", target, "--state-dir", str(state)) as svc:
        svc.ready()
        svc.signal(signal.SIGINT)
        svc.expect(r"stop requested \(SIGINT\)")
        time.sleep(REPEAT_WINDOW * 1.5)  # past the window: a second Ctrl-C of its own
        svc.signal(signal.SIGINT)
        assert svc.wait() == ExitCode.STOP_INCOMPLETE
        out = "\n".join(svc.output())
    assert "stop forced (SIGINT)" in out


#: System call numbers by machine: tgkill(2) (Python has no call that signals one thread of
#: another process) and futex(2) (what a thread blocked on a Python lock waits in).
_SYSCALLS = {"x86_64": (234, 202), "aarch64": (131, 98)}


def _syscalls() -> tuple[int, int]:
    import platform

    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None or not sys.platform.startswith("linux"):
        pytest.skip(f"needs tgkill(2) and futex(2), whose numbers here ({platform.machine()}) the test does not know")
    return numbers


def _tgkill(pid: int, tid: int, signum: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_syscalls()[0], pid, tid, signum) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"tgkill({pid}, {tid}, {signum}): {os.strerror(errno)}")


def _blocked_in_futex(pid: int, tid: int) -> bool:
    """The thread sleeps in futex(2): a Python lock, where the main thread waits for a stop."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    except OSError:
        return False
    return bool(fields) and fields[0] == str(_syscalls()[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_that_lands_on_a_worker_thread_stops_the_service(tmp_path, signum):
    """A process-directed signal may be delivered on any thread (and one that reaches the main
    thread just before it blocks interrupts nothing). Here it is aimed at the newest non-main
    thread, once the main thread is blocked in its wait: the service stops, gracefully."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "release").touch()  # its task ends at once
    with ServiceProcess("run", _service(tmp_path), "--state-dir", str(state), "--manager", "foreground") as svc:
        svc.ready()
        pid = svc.proc.pid
        until(lambda: _blocked_in_futex(pid, pid), "the main thread to block in its wait")
        threads = sorted((int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid), reverse=True)
        assert threads, "the service runs no thread but its main one"
        for tid in threads:  # the newest that is still there
            try:
                _tgkill(pid, tid, signum)
                break
            except ProcessLookupError:
                continue
        assert svc.wait() == ExitCode.OK
        out = "\n".join(svc.output())
    assert f"stop requested ({signal.Signals(signum).name})" in out


def test_run_with_a_name_logs_under_that_name_where_systemd_says(tmp_path):
    logs_dir, state = tmp_path / "var-log", tmp_path / "state"
    state.mkdir()
    (state / "release").touch()
    with ServiceProcess("run", _service(tmp_path), "--name", "slow-two", "--state-dir", str(state),
                        "--manager", "foreground", LOGS_DIRECTORY=str(logs_dir)) as svc:
        svc.ready()
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK
        out = "\n".join(svc.output())
    assert f"slow-two keeps its state in {tmp_path / 'state'} (command line --state-dir)" in out
    assert "slow-two: started" in out  # the service is known by its installed name
    assert "slow: stopping" in (logs_dir / "slow-two.log").read_text()  # $LOGS_DIRECTORY/NAME.log
    assert not (tmp_path / "state" / "logs").exists()


def test_under_systemd_the_first_line_already_carries_journald_s_priority_prefix(tmp_path):
    """stderr is the journal when $JOURNAL_STREAM names it (systemd sets it): every line, the
    first included, is ``<N>LEVEL logger: message`` (journald reads N and adds its own time)."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "release").touch()
    journal = tmp_path / "journal"
    with journal.open("w") as stream:
        st = os.fstat(stream.fileno())
        env = {**proc_env(), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "INVOCATION_ID": "0" * 32,
               "SERVICEHOST_RUNTIME_DIR": str(tmp_path / "run")}
        env.pop("NOTIFY_SOCKET", None)
        run = subprocess.Popen([sys.executable, "-m", "servicehost", "run", _service(tmp_path), "--state-dir",
                                str(state), "--log-file", "none"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=stream, env=env)
        try:
            until(lambda: "ready: every service said so" in journal.read_text(), "the service to be ready")
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(HANG_GUARD)
    lines = journal.read_text().splitlines()
    assert lines[0] == "<6>INFO servicehost.cli: running under systemd (INVOCATION_ID set and stderr is the journal)"
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
