"""The seed's pywin32 sample, through servicehost.compat (only its imports changed), installed with
its own HandleCommandLine and run under a real supervisord."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servicehost.platforms.supervisord import SupervisordManager

from .harness import HANG_GUARD, until
from .test_supervisord_real import home  # noqa: F401 (the fixture)

SEED = Path(__file__).resolve().parents[1] / "compat" / "seed_app.py"


def seed_that_waits(folder: Path) -> Path:
    """The seed with its placeholder ``main`` filled as pywin32 services do: wait for the stop event."""
    text = SEED.read_text(encoding="utf-8").replace(
        "        # Your main code here\n        pass\n",
        "        # Your main code here\n"
        "        win32event.WaitForSingleObject(self.hWaitStop, win32event.INFINITE)\n"
        "        servicemanager.LogInfoMsg('main loop ended')\n",
    )
    assert "WaitForSingleObject" in text
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "seed_wait.py"
    path.write_text(text, encoding="utf-8")
    return path


def pywin32_cli(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=HANG_GUARD, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.real_manager
def test_the_seed_via_compat_is_installed_started_stopped_and_removed_under_supervisord(home, monkeypatch):
    monkeypatch.setenv("SERVICEHOST_MANAGER", "supervisord")
    monkeypatch.setenv("SERVICEHOST_STATE_DIR", str(home / "state"))  # never the machine's own /var/lib
    script = seed_that_waits(home / "app")
    assert "Service installed" in pywin32_cli(script, "install").stdout
    manager = SupervisordManager()
    started = pywin32_cli(script, "start")  # pywin32's StartService queues the start and returns
    assert "Error" not in started.stdout, started.stdout
    until(lambda: manager.status("SampleService").state == "running", "the seed running under supervisord")
    pid = manager.status("SampleService").pid
    assert pid
    # stop (waited for), a queued start, then WaitForServiceStatus until RUNNING
    restarted = pywin32_cli(script, "--wait", "30", "restart")
    assert "Error" not in restarted.stdout and "Traceback" not in restarted.stderr, restarted.stdout + restarted.stderr
    again = manager.status("SampleService")
    assert again.state == "running" and again.pid != pid
    pywin32_cli(script, "--wait", "30", "stop")
    status = manager.status("SampleService")
    assert status.state == "stopped" and status.last_exit == 0  # SvcStop → a clean, requested stop
    log = manager.logs("SampleService")
    assert "main loop ended" in log  # SvcStop set the event; SvcDoRun's main returned
    assert "running under supervisord" in log
    assert "Service removed" in pywin32_cli(script, "remove").stdout
    assert manager.status("SampleService").state == "not-installed"
