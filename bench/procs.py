"""Child processes for the process-level benchmarks: spawn, wait for a readiness line on stderr,
read VmRSS, stop with SIGTERM. Timeouts here are hang guards only, never measurements."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from harness import ROOT, child_env

HANG_GUARD = 60.0
OURS_READY = b"ready: every service said so"  # logs.host_ready, on stderr
BARE_READY = b"bare: ready"


class Spawned:
    """A child whose stderr a reader thread drains; it stamps the moment the ready line arrives."""

    def __init__(self, argv: Sequence[str], ready_marker: bytes, **extra_env: str) -> None:
        self.argv = list(argv)
        self.marker = ready_marker
        self.lines: list[bytes] = []
        self.ready_at: float | None = None
        self._ready = threading.Event()
        env = child_env(**extra_env)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if self.ready_at is None and self.marker in line:
                self.ready_at = time.perf_counter()
                self._ready.set()
            self.lines.append(line)
        self._ready.set()  # EOF: the child ended (before or after its ready line)

    def output(self) -> str:
        return b"".join(self.lines).decode(errors="replace")

    def wait_ready(self) -> float:
        """Seconds from just before spawning until the ready line was read."""
        if not self._ready.wait(HANG_GUARD) or self.ready_at is None:
            self.kill()
            raise RuntimeError(f"{self.argv} never said ready; output:\n{self.output()}")
        return self.ready_at - self.t0

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        code, killed = wait_guarded(self.proc)
        if killed:
            raise RuntimeError(f"{self.argv} did not exit after SIGTERM; output:\n{self.output()}")
        return code

    def stop(self) -> int:
        self.terminate()
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_guarded(proc: subprocess.Popen[bytes]) -> tuple[int, bool]:
    """``proc.wait()`` without a timeout (a blocking waitpid: it returns the moment the child
    exits; ``wait(timeout)`` polls with sleeps of up to 50 ms), a timer killing a hung child.
    Returns the exit code and whether the guard had to kill it."""
    killed: list[bool] = []

    def kill() -> None:
        killed.append(True)
        proc.kill()

    guard = threading.Timer(HANG_GUARD, kill)
    guard.daemon = True
    guard.start()
    try:
        code = proc.wait()
    finally:
        guard.cancel()
    return code, bool(killed)


def run_quiet(argv: Sequence[str]) -> float:
    """Wall time of one short child run to completion (stdout/stderr discarded)."""
    env = child_env()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code, _ = wait_guarded(proc)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{list(argv)} exited {code}")
    return elapsed


def is_linux_proc() -> bool:
    return os.path.exists("/proc/self/status")
