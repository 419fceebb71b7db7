"""pywin32 service scripts in the public patterns, written for these tests (only their imports name
servicehost.compat), each run three ways:

* on Linux in ``debug`` (the foreground): SIGHUP is PARAMCHANGE, SIGTERM is SvcStop;
* on Linux through their own command line under a real supervisord: install, start, restart, stop,
  remove, with pywin32's status and control calls in between (``pattern_driver.py``);
* under Wine, the same driver and the same scripts with the real pywin32 and Wine's SCM.

The two driver runs must be alike: the same lines printed by each command (each side's text for an
error code replaced by the code: Wine's wordings are its own), the same exit codes, the same
SERVICE_STATUS tuples and error codes from QueryServiceStatus and ControlService, the same hooks
in the same order.

Patterns: a base class with start/stop/main (``pattern_base_app.py`` on ``pattern_base.py``);
``SvcOtherEx`` for controls (``pattern_controls.py``); ``PrepareToHostSingle`` +
``StartServiceCtrlDispatcher`` (``pattern_dispatcher.py``: installed as "python script.py", it
hosts itself when its manager launches it; from a terminal it fails with 1063); the recipe with
``win32api.Sleep`` and ``instart()`` (``recipe_app.py``: installed by class string, its service
runs the class and does not install itself again); a script with its own logging file
(``logging_app.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="on Windows servicehost.compat is pywin32 itself")

from ..conftest import IN_CI, TOOLS  # noqa: E402
from ..platforms.harness import supervisord_env, supervisord_home  # noqa: E402
from ..platforms.wine import NATIVE, ROOT, Wine, start_wine, winpath  # noqa: E402

HERE = Path(__file__).parent
HANG_GUARD = 90.0
SCRIPTS = ("pattern_base.py", "pattern_base_app.py", "pattern_controls.py", "pattern_dispatcher.py",
           "pattern_trace.py", "pattern_driver.py", "recipe_app.py", "logging_app.py")

RUNNING, STOPPED = 4, 1
OWN_PROCESS = 16
STOP, PAUSE, PARAMCHANGE, CUSTOM = 1, 2, 6, 200


def copy_scripts(folder: Path) -> Path:
    """The pattern scripts in a folder of the test's own (their trace and log files go beside them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SCRIPTS:
        shutil.copy(HERE / name, folder / name)
    return folder


def lifecycle(hook: str) -> list[list]:
    """The driver's steps for a script with HandleCommandLine: install, status and controls while
    it runs, start again (1056), restart (a new process), stop without and with --wait, stop again
    (1062), remove, and the calls on a service that is gone (1060)."""
    return [
        ["trace"],
        ["cli", "--startup", "manual", "install"],
        ["query"],
        ["control", STOP],  # not running: 1062
        ["cli", "stop"],
        ["cli", "start"],
        ["until", RUNNING],
        ["seen", hook, 1],
        ["query"],
        ["cli", "start"],  # running: 1056
        ["control", PAUSE],  # not accepted: 1052
        ["control", PARAMCHANGE],  # accepted only where GetAcceptedControls() says so
        ["control", CUSTOM],  # 128-255: always delivered, to SvcOtherEx
        ["control", 127],  # outside what a service may be sent: 87
        ["cli", "--wait", "30", "restart"],
        ["seen", hook, 2],
        ["query"],
        ["cli", "stop"],
        ["until", STOPPED],
        ["query"],
        ["cli", "--wait", "30", "start"],
        ["seen", hook, 3],
        ["query"],
        ["cli", "--wait", "30", "stop"],
        ["query"],
        ["cli", "remove"],
        ["query"],
        ["cli", "remove"],
    ]


# -- the two sides --------------------------------------------------------------------------------------
def linux_env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SERVICEHOST_MANAGER": "supervisord",
            "SERVICEHOST_STATE_DIR": str(home / "state"), **supervisord_env(home)}


def drive_linux(home: Path, folder: Path, script: str, name: str, steps: list[list],
                trace: str = "trace.jsonl") -> dict:
    proc = subprocess.run([sys.executable, str(folder / "pattern_driver.py"), str(folder / script), name,
                           str(folder / trace), json.dumps(steps)], env=linux_env(home),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=len(steps) * HANG_GUARD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drive_wine(wine: Wine, folder: Path, script: str, name: str, steps: list[list], trace: str = "trace.jsonl") -> dict:
    wine.py(winpath(folder / script), "remove")  # what an interrupted run may have left installed
    proc = wine.py(winpath(folder / "pattern_driver.py"), winpath(folder / script), name,
                   winpath(folder / trace), json.dumps(steps), timeout=len(steps) * HANG_GUARD)
    if proc.returncode != 0:  # leave nothing installed behind
        wine.py(winpath(folder / script), "remove")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def comparable(run: dict) -> list:
    """What must be alike on both sides: each step's printed lines (this side's text for an error
    code replaced by the code), exit code, result or error; then the hooks."""
    texts = sorted(run["texts"].items(), key=lambda kv: -len(kv[1]))
    out = []
    for step in run["steps"]:
        seen = {k: v for k, v in step.items() if k not in ("stdout", "stderr_last")}
        if "stdout" in step:
            lines = []
            for line in step["stdout"]:
                for code, text in texts:
                    line = line.replace(text, f"<{code}>")
                lines.append(line)
            seen["stdout"] = lines
        out.append(seen)
    return out + [run["hooks"]]


@pytest.fixture(scope="module")
def wine() -> Wine:
    if not NATIVE and not (TOOLS / "wine-python-env.sh").is_file():
        reason = f"shared tools not found at {TOOLS}: set SERVICEHOST_TOOLS"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return start_wine(TOOLS, IN_CI)


def run_alike(wine: Wine, tmp_path: Path, script: str, name: str, steps: list[list], trace: str = "trace.jsonl",
              keep=None) -> tuple[dict, dict]:
    """The driver's ``steps`` on both sides (each in a folder of its own); both runs, after checking
    they are alike (``keep`` picks the hooks to compare, default all)."""
    on_windows = drive_wine(wine, copy_scripts(tmp_path / "windows"), script, name, steps, trace)
    with supervisord_home() as home:
        on_linux = drive_linux(home, copy_scripts(home / "app"), script, name, steps, trace)
    for run in (on_windows, on_linux):
        run["hooks"] = (keep or (lambda hooks: hooks))(run["hooks"])
    assert comparable(on_linux) == comparable(on_windows)
    return on_windows, on_linux


def step(run: dict, *key) -> list[dict]:
    return [s for s in run["steps"] if s["step"][:len(key)] == list(key)]


# -- debug, in the foreground on Linux ------------------------------------------------------------------
class Debugged:
    """``python SCRIPT debug`` in a real process: its output collected as it comes."""

    def __init__(self, folder: Path, script: str, name: str, trace: Path, state: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SERVICEHOST_STATE_DIR": str(state)}
        env.pop("SERVICEHOST_MANAGER", None)
        subprocess.run([sys.executable, "-c", "import sys; from servicehost.compat import win32serviceutil as u; "
                        "u.SetServiceCustomOption(sys.argv[1], 'trace', sys.argv[2])", name, str(trace)],
                       env=env, check=True, timeout=HANG_GUARD)
        self.trace = trace
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, str(folder / script), "debug"], env=env, cwd=folder,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        import threading

        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def hooks(self) -> list[str]:
        from .pattern_driver import hooks

        return hooks(str(self.trace))

    def until(self, what: str, done) -> None:
        deadline = time.monotonic() + HANG_GUARD  # a hang guard only
        while not done():
            if time.monotonic() > deadline or self.proc.poll() is not None and not done():
                raise AssertionError(f"{what}: never came; hooks {self.hooks()}, output:\n" + "\n".join(self.lines))
            time.sleep(0.02)

    def seen(self, hook: str, count: int = 1) -> None:
        self.until(f"hook {hook!r} x{count}", lambda: self.hooks().count(hook) >= count)

    def said(self, text: str) -> None:
        self.until(f"a line with {text!r}", lambda: any(text in line for line in self.lines))

    def finish(self) -> int:
        """SIGTERM (SvcStop); the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=HANG_GUARD)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.reader.join(HANG_GUARD)
        return code


def debug(tmp_path: Path, script: str, name: str, trace: str = "trace.jsonl") -> Debugged:
    folder = copy_scripts(tmp_path / "debug")
    return Debugged(folder, script, name, folder / trace, tmp_path / "state")


def refused_once(lines: list[str]) -> None:
    """A SIGHUP the script does not take (no SERVICE_ACCEPT_PARAMCHANGE): one warning line, no
    traceback, no error."""
    refused = [line for line in lines if "PARAMCHANGE refused" in line]
    assert len(refused) == 1 and "WARNING" in refused[0], lines
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines


# -- the patterns ---------------------------------------------------------------------------------------
def test_the_base_class_pattern_runs_in_debug(tmp_path):
    run = debug(tmp_path, "pattern_base_app.py", "shc1base")
    run.seen("main")
    run.proc.send_signal(signal.SIGHUP)
    run.said("PARAMCHANGE refused")
    assert run.finish() == 0
    assert run.hooks() == ["start", "main", "stop", "main-end"]
    refused_once(run.lines)


@pytest.mark.real_manager
def test_the_base_class_pattern_under_supervisord_and_the_scm_alike(wine, tmp_path):
    on_windows, on_linux = run_alike(wine, tmp_path, "pattern_base_app.py", "shc1base", lifecycle("main"))
    running = [16, RUNNING, 1, 0, 0, 0, 5000]  # accepts STOP only; the wait hint it reported
    assert step(on_linux, "query")[1]["result"] == running
    assert [s.get("error") for s in step(on_linux, "control")] == [1062, 1052, 1052, None, 87]
    assert [s["stdout"][-1] for s in step(on_linux, "cli", "start")] == [
        "Starting service shc1base", f"Error starting service: {on_linux['texts']['1056']}"]
    assert on_linux["hooks"] == ["start", "main", "stop", "main-end"] * 3


def test_the_controls_pattern_runs_in_debug(tmp_path):
    run = debug(tmp_path, "pattern_controls.py", "shc1ctl")
    run.seen("SvcDoRun")
    run.proc.send_signal(signal.SIGHUP)
    run.seen("SvcOtherEx")
    assert run.finish() == 0
    assert run.hooks() == ["SvcDoRun", "SvcOtherEx", "SvcDoRun-end"]
    assert any("shc1ctl: parameters changed" in line for line in run.lines), run.lines


@pytest.mark.real_manager
def test_the_controls_pattern_under_supervisord_and_the_scm_alike(wine, tmp_path):
    on_windows, on_linux = run_alike(wine, tmp_path, "pattern_controls.py", "shc1ctl", lifecycle("SvcDoRun"))
    accepted = 1 | 8  # STOP | PARAMCHANGE
    assert step(on_linux, "query")[1]["result"] == [16, RUNNING, accepted, 0, 0, 0, 5000]
    assert [s.get("error") for s in step(on_linux, "control")] == [1062, 1052, None, None, 87]
    assert on_linux["hooks"][:4] == ["SvcDoRun", "SvcOtherEx", "SvcOtherEx", "SvcDoRun-end"]


@pytest.mark.real_manager
def test_the_dispatcher_pattern_fails_from_a_terminal_and_runs_under_supervisord_and_the_scm_alike(wine, tmp_path):
    steps = [["cli"]] + lifecycle("SvcDoRun")  # first from a terminal, with no arguments: 1063
    on_windows, on_linux = run_alike(wine, tmp_path, "pattern_dispatcher.py", "shc1disp", steps)
    for run in (on_windows, on_linux):
        terminal = run["steps"][0]
        assert terminal["rc"] == 1 and "(1063, 'StartServiceCtrlDispatcher'" in terminal["stderr_last"], terminal
    assert on_linux["hooks"] == ["__init__", "SvcDoRun", "SvcStop", "SvcDoRun-end"] * 3


def test_the_dispatcher_pattern_runs_in_debug(tmp_path):
    run = debug(tmp_path, "pattern_dispatcher.py", "shc1disp")
    run.seen("SvcDoRun")
    assert run.finish() == 0
    assert run.hooks() == ["__init__", "SvcDoRun", "SvcStop", "SvcDoRun-end"]


RECIPE_TRACE = "recipe_app.trace"
ALIVE = "I'm alive ..."


def test_the_recipe_pattern_runs_in_debug(tmp_path):
    run = debug(tmp_path, "recipe_app.py", "shrecipe", RECIPE_TRACE)
    run.seen(ALIVE)
    run.proc.send_signal(signal.SIGHUP)
    run.said("PARAMCHANGE refused")
    assert run.finish() == 0
    assert sorted(run.hooks()) == sorted(["init", "start", ALIVE, "stopping", "I'm done", "stopped", "wait", "done"])
    refused_once(run.lines)


@pytest.mark.real_manager
def test_the_recipe_installs_and_starts_itself_once_under_supervisord_and_the_scm_alike(wine, tmp_path):
    """``python recipe_app.py`` (instart): installed by its class string with an automatic start, and
    started; its service runs the class — it does not install itself again from inside."""
    steps = [["cli"], ["until", RUNNING], ["seen", ALIVE, 1], ["query"], ["cli", "start"],
             ["cli", "--wait", "30", "restart"], ["seen", ALIVE, 2], ["query"], ["cli", "--wait", "30", "stop"],
             ["query"], ["cli", "remove"]]
    on_windows, on_linux = run_alike(wine, tmp_path, "recipe_app.py", "shrecipe", steps, RECIPE_TRACE,
                                     keep=before_stopped)
    assert on_linux["steps"][0]["stdout"] == ["Install ok", "Start ok"]
    assert on_linux["hooks"] == sorted(["init", "start", ALIVE, "stopping", "I'm done", "stopped"] * 2)


def before_stopped(hooks: list[str]) -> list[str]:
    """The recipe's lines up to its report of STOPPED (in SvcStop), in any order (SvcStop runs on
    another thread than SvcDoRun). What SvcDoRun logs after it ("wait", "done") is a race on
    Windows: the SCM takes the report as the end, StartServiceCtrlDispatcher returns and
    pythonservice.exe exits; under servicehost SvcDoRun returns first."""
    return sorted(hook for hook in hooks if hook not in ("wait", "done"))


LOG_FILE = "logging_app.log"
FIRST_TICK = "WARNING logging_app: first tick"


def own_lines(hooks: list[str]) -> list[str]:
    """The script's own records in its log file (servicehost's records propagate there too on Linux,
    as any library's do; pywin32's go to the Event Log)."""
    return [line for line in hooks if " logging_app: " in line]


def test_the_logging_pattern_keeps_its_own_file_in_debug(tmp_path):
    run = debug(tmp_path, "logging_app.py", "shlogapp", LOG_FILE)
    run.seen(FIRST_TICK)
    assert run.finish() == 0
    assert own_lines(run.hooks()) == ["INFO logging_app: init shlogapp", "INFO logging_app: running", FIRST_TICK,
                                      "INFO logging_app: stop requested", "INFO logging_app: stopped"]
    assert any("logging_app: first tick" in line for line in run.lines)  # and on the console, once
    assert sum("first tick" in line for line in run.lines) == 1, run.lines


@pytest.mark.real_manager
def test_the_logging_pattern_under_supervisord_and_the_scm_alike(wine, tmp_path):
    steps = [["cli", "install"], ["cli", "start"], ["until", RUNNING], ["seen", FIRST_TICK, 1], ["query"],
             ["cli", "--wait", "30", "restart"], ["seen", FIRST_TICK, 2], ["cli", "--wait", "30", "stop"],
             ["query"], ["cli", "remove"]]
    on_windows, on_linux = run_alike(wine, tmp_path, "logging_app.py", "shlogapp", steps, LOG_FILE, keep=own_lines)
    assert on_linux["hooks"] == ["INFO logging_app: init shlogapp", "INFO logging_app: running", FIRST_TICK,
                                 "INFO logging_app: stop requested", "INFO logging_app: stopped"] * 2
