"""State, logs and runtime directories follow the installed name (issue 10 item 5), with a real
supervisord (servicehost's own, in a temp home) and real service processes.

One class installed twice under two names keeps two state directories (two SQLite files, two log
files), each named after its install; a foreground run of that class given one of the names with
``--name`` uses that install's state; without it, the class's own. The default state dir is the
per-user one (as root ``/var/lib/servicehost/NAME``), so the names are unique to this test run and
``remove --purge`` deletes what the services wrote. Timeouts are hang guards only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from servicehost.config import default_state_dir
from servicehost.errors import ExitCode

from .harness import HANG_GUARD, supervisord_env, supervisord_home, until

pytestmark = [pytest.mark.real_manager]

ROOT = Path(__file__).resolve().parents[2]
RUN = os.getpid() % 100000

RECORDER = '''
"""Writes who it is into its state dir, and logs it."""
import os
from servicehost import Service


class Recorder(Service):
    def start(self):
        (self.state_dir / "who").write_text(f"{self.name} {os.getpid()}\\n")
        self.log.info("recorder: %s keeps its state in %s", self.name, self.state_dir)
'''


def _cli(env: dict[str, str], *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "servicehost", *args], env=env, capture_output=True, text=True,
                          timeout=HANG_GUARD, stdin=subprocess.DEVNULL, cwd=ROOT)
    if expect is not None:
        assert proc.returncode == expect, f"servicehost {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


def _settings(env: dict[str, str], *args: str) -> dict[str, str]:
    out = _cli(env, "settings", *args).stdout
    return {k: v.split("  #")[0].strip() for k, _, v in (line.partition(" = ") for line in out.splitlines()) if _}


def test_two_installs_of_one_class_keep_two_state_dirs_and_a_foreground_run_joins_one_by_name(tmp_path):
    target = tmp_path / "recorder.py"
    target.write_text(RECORDER)
    names = [f"shstate{RUN}a", f"shstate{RUN}b"]
    with supervisord_home() as home:
        env = {**os.environ, **supervisord_env(home), "SERVICEHOST_MANAGER": "supervisord"}
        for key in ("SERVICEHOST_STATE_DIR", "STATE_DIRECTORY", "LOGS_DIRECTORY", "SERVICEHOST_CONFIG"):
            env.pop(key, None)
        states = {name: default_state_dir(name, env) for name in names}
        try:
            for name in names:
                _cli(env, "install", str(target), "--name", name)
                _cli(env, "start", name)
            for name in names:
                state = states[name]
                assert state.name == name and (state / "who").read_text().startswith(f"{name} ")
                assert (state / "logs" / f"{name}.log").is_file()  # the log file is named after the install too
                assert f"recorder: {name} keeps its state in {state}" in _cli(env, "logs", name).stdout
            assert states[names[0]] != states[names[1]]

            # settings says which state dir a run uses: the install's with --name, else the class's
            assert Path(_settings(env, str(target), "--name", names[0])["state_dir"]) == states[names[0]]
            assert Path(_settings(env, str(target))["state_dir"]) == default_state_dir("Recorder", env)

            # a foreground run given the installed name uses that install's state (stopped first: one owner)
            _cli(env, "stop", names[0])
            run = subprocess.Popen([sys.executable, "-m", "servicehost", "run", str(target), "--name", names[0],
                                    "--manager", "foreground"], env={**env, "SERVICEHOST_RUNTIME_DIR": str(tmp_path)},
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, cwd=ROOT)
            try:
                until(lambda: (states[names[0]] / "who").read_text() == f"{names[0]} {run.pid}\n",
                      "the foreground run to write its state")
            finally:
                run.send_signal(signal.SIGTERM)
                _, err = run.communicate(timeout=HANG_GUARD)
            assert run.returncode == ExitCode.OK, err
            assert f"{names[0]} keeps its state in {states[names[0]]} (the default for {names[0]})" in err
            assert (states[names[1]] / "who").read_text().startswith(f"{names[1]} ")  # the other one untouched
        finally:
            for name in names:
                if _cli(env, "status", name, expect=None).returncode != 4:  # 4: not installed
                    _cli(env, "remove", name, "--purge", expect=None)
            for state in states.values():  # whatever a failed step left behind
                shutil.rmtree(state, ignore_errors=True)
