"""A real service process for integration tests: start it, read its log lines, signal it.

Timeouts here are hang guards only (generous multiples of the expected time), never assertions
about speed.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HANG_GUARD = 60.0


def env(**extra: str) -> dict[str, str]:
    """The test environment for a child: the repo's src importable whether or not it is installed."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), out.get("PYTHONPATH", "")]))
    out.update(extra)
    return out


class ServiceProcess:
    """``python -m servicehost ARGS`` as a child; its stderr (the console log) is read line by line."""

    def __init__(self, *args: str, cwd: Path | None = None, **extra_env: str) -> None:
        self.argv = [sys.executable, "-m", "servicehost", *args]
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd or ROOT, env=env(**extra_env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self.lines: list[str] = []
        self._inbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._inbox.put(line.rstrip("\n"))
        self._inbox.put(None)

    def expect(self, pattern: str, timeout: float = HANG_GUARD) -> re.Match[str]:
        """Wait for a line matching ``pattern``; fail with the output so far if it never comes."""
        rx = re.compile(pattern)
        for line in self.lines:
            if m := rx.search(line):
                return m
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    line = self._inbox.get(timeout=0.5)
                except queue.Empty:
                    continue
                if line is None:
                    break
                self.lines.append(line)
                if m := rx.search(line):
                    return m
        finally:
            timer.cancel()
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))

    def ready(self) -> None:
        self.expect(r"ready: every service said so")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = HANG_GUARD) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("service did not exit; output:\n" + "\n".join(self.output()))
        return code

    def output(self) -> list[str]:
        while True:
            try:
                line = self._inbox.get(timeout=0.2 if self.proc.poll() is not None else 0.01)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return self.lines

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_cli(*args: str, timeout: float = HANG_GUARD, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servicehost", *args], cwd=ROOT, env=env(**extra_env),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )
