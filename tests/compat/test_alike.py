"""The seed's pywin32 sample, through servicehost.compat, behaves alike on Windows (the real pywin32
under Wine's SCM, hosted by pythonservice.exe) and on Linux (servicehost's implementation, in the
foreground): the same hook calls in the same order, the same LogMsg calls, the same exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import IN_CI, TOOLS
from ..platforms.wine import NATIVE, ROOT, Wine, start_wine, winpath

APP = Path(__file__).with_name("traced_app.py")
NAME = "shseedtrace"
HANG_GUARD = 60.0


def _trace(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(path: Path, hook: str, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while hook not in [r["hook"] for r in _trace(path)]:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: no {hook!r} in the trace: {_trace(path)}")
        time.sleep(0.05)


def linux_run(tmp_path: Path) -> tuple[list[dict], int, str]:
    """``python traced_app.py debug`` in the foreground: SIGHUP is PARAMCHANGE, SIGTERM is SvcStop."""
    trace = tmp_path / "linux.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "STATE_DIRECTORY": str(tmp_path / "state")}
    subprocess.run([sys.executable, "-c", "import sys; from servicehost.compat import win32serviceutil as u; "
                    "u.SetServiceCustomOption(sys.argv[1], 'trace', sys.argv[2])", NAME, str(trace)],
                   env=env, check=True, timeout=HANG_GUARD)
    proc = subprocess.Popen([sys.executable, str(APP), "debug"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(trace, "main", "linux")
        proc.send_signal(signal.SIGHUP)
        _wait_for(trace, "SvcOtherEx", "linux")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
    return _trace(trace), proc.returncode, out


WINDOWS_DRIVER = r"""
import json, sys, time, win32service as ws, win32serviceutil as u
name, trace = sys.argv[1], sys.argv[2]
u.SetServiceCustomOption(name, "trace", trace)
scm = ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS)
h = ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS)
def until(state):
    t0 = time.time()
    while ws.QueryServiceStatus(h)[1] != state and time.time() - t0 < 60:
        time.sleep(0.05)
def seen(hook):
    t0 = time.time()
    while time.time() - t0 < 60:
        try:
            if any(json.loads(l)["hook"] == hook for l in open(trace)):
                return
        except OSError:
            pass
        time.sleep(0.05)
ws.StartService(h, None)
until(ws.SERVICE_RUNNING)
seen("main")
ws.ControlService(h, ws.SERVICE_CONTROL_PARAMCHANGE)
seen("SvcOtherEx")
ws.ControlService(h, ws.SERVICE_CONTROL_STOP)
until(ws.SERVICE_STOPPED)
print(json.dumps(list(ws.QueryServiceStatus(h))))
"""


@pytest.fixture(scope="module")
def wine() -> Wine:
    if not NATIVE and not (TOOLS / "wine-python-env.sh").is_file():
        reason = f"shared tools not found at {TOOLS}: set SERVICEHOST_TOOLS"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return start_wine(TOOLS, IN_CI)


def windows_run(wine: Wine, tmp_path: Path) -> tuple[list[dict], list[int], str]:
    """The real HandleCommandLine installs it (pythonservice.exe); the SCM starts, controls, stops it."""
    trace = tmp_path / "windows.jsonl"
    eventlog_at = wine.eventlog_size()
    installed = wine.py(winpath(APP), "--startup", "manual", "install", check=True)
    # (pywin32 updates a service left installed by an interrupted run: both are fine)
    assert "Service installed" in installed.stdout or "Service updated" in installed.stdout, installed.stdout
    try:
        status = wine.script(WINDOWS_DRIVER, NAME, winpath(trace))
    finally:
        removed = wine.py(winpath(APP), "remove")
        assert "Service removed" in removed.stdout, removed.stdout + removed.stderr
    return _trace(trace), status, wine.eventlog_since(eventlog_at)  # type: ignore[return-value]


def _observable(records: list[dict]) -> list[tuple]:
    out = []
    for r in records:
        if r["hook"] == "LogMsg":
            out.append(("LogMsg", r["type"], r["id"], tuple(r["inserts"])))
        elif r["hook"] == "__init__":
            out.append(("__init__", tuple(r["args"])))
        else:
            out.append((r["hook"], r.get("control"), r.get("rc")))
    return out


EXPECTED = [("__init__", (NAME,)), ("SvcDoRun", None, None), ("LogMsg", 4, 0x40001002, (NAME, "")),
            ("main", None, None), ("SvcOtherEx", 6, None), ("SvcStop", None, None), ("main-end", None, 0),
            ("SvcDoRun-end", None, None)]


@pytest.mark.real_manager
def test_the_seed_behaves_alike_under_the_scm_and_on_linux(wine, tmp_path):
    on_windows, status, events = windows_run(wine, tmp_path)
    assert _observable(on_windows) == EXPECTED
    assert status[1] == 1 and status[3:5] == [0, 0]  # STOPPED, win32 exit code 0
    # The LogMsg itself: Wine's ReportEvent trace shows its insert; Windows reads the record back.
    assert (f"{NAME} {0x1002} 4 {NAME}" if NATIVE else f'trace:eventlog:ReportEventW L"{NAME}"') in events
    if NATIVE:
        return  # the Linux half runs in .ci/run
    on_linux, code, output = linux_run(tmp_path)
    assert _observable(on_linux) == EXPECTED and code == 0
    assert f"{NAME}: The {NAME} service has started." in output  # rendered as the Event Log renders it
