"""servicehost's own supervisord, as the README says: its home (``SERVICEHOST_SUPERVISORD_HOME``) is
told to every program, so servicehost run inside a program (a ported pywin32 script installing
itself) reaches the same supervisord; each program runs in its state directory, not in /; and
removing the last program stops the supervisord servicehost started, never one it did not.
Real parts: the real ``supervisor`` package, a real supervisord in a temp home, real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servicehost.platforms.base import InstallOptions, launch_command
from servicehost.platforms.supervisord import STARTED_MARKER, SupervisordManager

from .harness import HANG_GUARD, read_pid, until, wait_gone
from .test_supervisord_real import home  # noqa: F401 (the fixture: servicehost's own supervisord in a temp dir)

SERVICES = '''
import json, os, subprocess, sys
from pathlib import Path
from servicehost import Service


class Idle(Service):
    def run(self, stop):
        stop.wait()


class InstallsItself(Service):
    """Records where it runs and what it was told, then installs a second service from inside
    (as a ported pywin32 script installing itself would)."""

    def start(self):
        seen = {"cwd": os.getcwd(), "home": os.environ.get("SERVICEHOST_SUPERVISORD_HOME")}
        proc = subprocess.run(
            [sys.executable, "-m", "servicehost", "install", f"{__file__}:Idle", "--name", "Inner",
             "--start", "manual", "--state-dir", os.environ["INNER_STATE"], "--manager", "supervisord"],
            capture_output=True, text=True, timeout=60)
        seen.update(install=proc.returncode, said=proc.stdout + proc.stderr)
        Path(os.environ["SEEN"]).write_text(json.dumps(seen))

    def run(self, stop):
        stop.wait()
'''


@pytest.fixture
def services(home) -> Path:  # noqa: F811 (the fixture above)
    path = home / "sh_home_services.py"
    path.write_text(SERVICES)
    return path


def _install(manager: SupervisordManager, home: Path, services: Path, cls: str, env=()) -> InstallOptions:
    options = InstallOptions(name=cls, stop_timeout=10, state_dir=str(home / "state" / cls), environment=tuple(env))
    manager.install(options, launch_command(f"{services}:{cls}", state_dir=options.state_dir))
    return options


@pytest.mark.real_manager
def test_a_program_runs_in_its_state_dir_and_reaches_its_own_supervisord_from_inside(home, services):
    manager = SupervisordManager()
    seen_file = home / "seen.json"
    inner_state = home / "state" / "Inner"
    options = _install(manager, home, services, "InstallsItself",
                       env=(("SEEN", str(seen_file)), ("INNER_STATE", str(inner_state))))
    manager.start("InstallsItself", wait=HANG_GUARD)
    seen = json.loads(seen_file.read_text())
    assert seen["cwd"] == options.state_dir  # not /
    assert seen["home"] == str(manager.layout.home)
    assert seen["install"] == 0, seen["said"]
    assert manager.layout.program_file("Inner").is_file()
    assert manager.status("Inner").state == "stopped"  # installed into this same supervisord
    supervisord = read_pid(manager.layout.pidfile)
    manager.remove("Inner")
    assert manager.is_running()  # a program is left: supervisord stays
    manager.remove("InstallsItself")
    assert not manager.is_running()  # the last one gone: the supervisord servicehost started stops
    wait_gone(supervisord)
    assert not (manager.layout.home / STARTED_MARKER).exists()


@pytest.mark.real_manager
def test_a_supervisord_servicehost_did_not_start_stays_when_its_last_program_goes(home, services):
    manager = SupervisordManager()
    manager._prepare_owned()
    # run as a container's entrypoint would run it (here daemonized): not started by servicehost
    subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(manager.layout.conf)],
                   check=True, timeout=HANG_GUARD, cwd="/", stdin=subprocess.DEVNULL, capture_output=True)
    until(manager.is_running, "the supervisord started by hand")
    _install(manager, home, services, "Idle")
    manager.remove("Idle")
    assert manager.is_running()
