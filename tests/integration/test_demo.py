"""The first minutes (issue 10 item 8): ``bash scripts/demo.sh`` on a fresh copy of the checkout,
as a new user runs it. It says what it is doing while it sets up (the venv, pip's own lines)
instead of staying silent, then where this run keeps its files and the command that drops a test
file; following that command, the file is processed where it says to look; Ctrl-C stops it
cleanly. A second run starts without installing again. Timeouts are hang guards only (the first
run installs with pip: up to a few minutes on a slow network).
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from servicehost.errors import ExitCode

from .proc import ROOT

pytestmark = [pytest.mark.slow]

INSTALL_GUARD = 600.0  # seconds: pip in a fresh venv, only against hangs
HANG_GUARD = 60.0


class Demo:
    """``bash scripts/demo.sh ARGS`` in ``checkout``; its output (stdout and stderr) line by line."""

    def __init__(self, checkout: Path, *args: str) -> None:
        self.proc = subprocess.Popen(["bash", "scripts/demo.sh", *args], cwd=checkout, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env=_user_env())
        self.lines: list[str] = []
        self._inbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._inbox.put(line.rstrip("\n"))
        self._inbox.put(None)

    def expect(self, pattern: str, guard: float = HANG_GUARD) -> re.Match[str]:
        rx = re.compile(pattern)
        for line in self.lines:
            if m := rx.search(line):
                return m
        while True:
            try:
                line = self._inbox.get(timeout=guard)
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if m := rx.search(line):
                return m

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = self.proc.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the demo did not stop; output:\n" + "\n".join(self.lines)) from None
        while (line := self._inbox.get(timeout=HANG_GUARD)) is not None:
            self.lines.append(line)
        return code


def _user_env() -> dict[str, str]:
    """A new user's shell: none of this test run's venv or servicehost settings (pip's own settings
    stay: a proxy, an index)."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "STATE_DIRECTORY", "LOGS_DIRECTORY", "RUNTIME_DIRECTORY"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SERVICEHOST_")}
    return {**env, "PYTHON": sys.executable}


def _fresh_checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "servicehost"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", ".mypy_cache", ".pytest_cache", "build"))
    return checkout


def test_the_demo_says_what_it_does_and_where_to_drop_a_file(tmp_path):
    checkout, state = _fresh_checkout(tmp_path), tmp_path / "state"
    demo = Demo(checkout, "--state-dir", str(state))
    try:
        demo.expect(r"^demo: creating \.venv with Python 3\.")
        demo.expect(r"^demo: installing servicehost into \.venv")
        demo.expect(r"^demo: pip: ", INSTALL_GUARD)  # pip's own progress, not 90 silent seconds
        demo.expect(r"^demo: installed$", INSTALL_GUARD)
        assert demo.expect(r"^demo: state in (.*)$")[1] == str(state)
        command = demo.expect(r"^demo: drop a test file, in another terminal:  (cp README\.md .*)$")[1]
        look = demo.expect(r"^demo: then look at: (.*)/<sha256>\.gz and (.*) \(a summary")
        demo.expect(r"ready: every service said so")
        subprocess.run(shlex.split(command), cwd=checkout, check=True, timeout=HANG_GUARD)
        demo.expect(r"1 processed, 0 failed")  # the summary logged while files flow
        out = Path(look[1])
        assert [p.suffix for p in out.iterdir()] == [".gz"] and Path(look[2]).is_file()
    finally:
        code = demo.stop()
    assert code == ExitCode.OK, "\n".join(demo.lines)

    again = Demo(checkout, "--state-dir", str(state))  # set up already: it starts at once
    try:
        again.expect(r"ready: every service said so")
    finally:
        assert again.stop() == ExitCode.OK
    assert not [line for line in again.lines if line.startswith(("demo: creating", "demo: installing", "demo: pip"))]
