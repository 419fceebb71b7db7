"""Restarts exactly as the README's table says, on every manager (``platforms/restarts.py``): exit
2 and 3 are never restarted, a crash is, after ``--restart-delay``, each crash in a row waiting
twice as long up to 60 s.

* the policy, and the record a supervisord program leaves for the next (pure);
* systemd: the unit has RestartSec= and RestartPreventExitStatus=; RestartSteps= and
  RestartMaxDelaySec= only for a systemd that has them (>= 254), and the 252 this suite runs
  rejects them: checked by its own ``systemd-analyze verify``;
* the SCM: the failure actions grow (pure here; stored and run by a real SCM in
  test_windows_wine.py, a ``wine-lacks: failure actions`` skip under Wine);
* supervisord for real (it restarts at once; servicehost waits itself, ``supervisord/backoff.py``):
  starts are counted and the gaps between them ordered, never timed (limits are hang guards only).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from servicehost.errors import ExitCode, StartupError
from servicehost.platforms import exit_status, restarts
from servicehost.platforms.base import InstallOptions, ServiceStatus, launch_command
from servicehost.platforms.supervisord import RECORD_FILE, Record, SupervisordManager, plan, read_record, restart_delay
from servicehost.platforms.systemd import UnitSettings, parse_version, render_unit
from servicehost.platforms.windows import failure_actions

from .harness import HANG_GUARD, until
from .test_supervisord_real import home  # noqa: F401 (the fixture: servicehost's own supervisord in a temp dir)
from .test_systemd_unit import options, value, verify, write  # noqa: F401 (verify: the fixture)

BOOT = "boot-1"


# -- the policy: pure -----------------------------------------------------------------------------
def test_each_crash_in_a_row_doubles_the_wait_up_to_the_cap():
    assert restarts.delays(5) == [5, 10, 20, 40, 60]
    assert [restarts.delay(1, n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert restarts.delays(0) == [0]  # --restart-delay 0: at once, every time
    assert restarts.delays(300) == [300]  # longer than the cap: it is the cap
    assert restarts.delay(5, 10_000) == 60  # no overflow however long the row


def test_systemd_steps_reach_the_cap_growing_at_most_twofold_each():
    for base in (0.1, 1, 5, 7, 59):
        n = restarts.steps(base)
        ratio = (restarts.max_delay(base) / base) ** (1 / n)  # systemd: r_i = r_0 * (r_n / r_0) ** (i / n)
        assert 1 < ratio <= 2, base
    assert restarts.steps(0) == restarts.steps(60) == restarts.steps(600) == 0


def _record(tmp_path: Path, **fields) -> None:
    (tmp_path / RECORD_FILE).write_text(json.dumps(Record(**{"boot": BOOT, **fields})._asdict()))


def test_the_record_decides_the_wait(tmp_path):
    def planned(now: float = 1000.0, boot: str = BOOT) -> tuple[int, float]:
        return plan(tmp_path, 5, now=now, boot=boot)

    assert planned() == (0, 0)  # no record: a first start
    _record(tmp_path, phase="exited", crashes=3, since=990, exit=ExitCode.CRASH)
    assert planned() == (4, 40)  # one more crash in a row
    assert planned(boot="boot-2") == (0, 0)  # a record from another boot counts for nothing
    _record(tmp_path, phase="running", crashes=3, since=990)  # no exit written: killed (kill -9, OOM)
    assert planned() == (4, 40)
    _record(tmp_path, phase="exited", crashes=3, since=1000 - restarts.HEALTHY, exit=ExitCode.HUNG)
    assert planned() == (1, 5)  # a healthy run ended the row: it starts again at --restart-delay
    for code in (ExitCode.OK, ExitCode.CONFIG_ERROR, ExitCode.START_FAILURE, ExitCode.STOP_INCOMPLETE):
        _record(tmp_path, phase="exited", crashes=3, since=990, exit=code)
        assert planned() == (0, 0), code  # not a crash: no wait
    _record(tmp_path, phase="waiting", crashes=2, until=1010)
    assert planned() == (2, 10)  # killed while waiting: the same wait again
    (tmp_path / RECORD_FILE).write_text('{"phase": "exited", "crashes": "many"}')
    assert read_record(tmp_path) is None and planned() == (0, 0)
    assert restart_delay({"SERVICEHOST_RESTART_DELAY": "2.5"}) == 2.5
    assert [restart_delay({"SERVICEHOST_RESTART_DELAY": v}) for v in ("", "-1", "nan", "inf", "x")] == [None] * 5


# -- systemd: RestartSec= everywhere, the growing steps only where systemd has them -------------------
def test_systemd_gets_the_growing_steps_only_from_version_254():
    def restart_keys(version: int | None, **kw) -> dict[str, list[str]]:
        text = render_unit(options(**kw), ["/usr/bin/python3", "-m", "servicehost", "run", "/srv/x.py"],
                           settings=UnitSettings(systemd_version=version)).text
        keys = ("Restart", "RestartSec", "RestartSteps", "RestartMaxDelaySec", "RestartPreventExitStatus")
        return {k: value(text, k) for k in keys}

    status = exit_status("systemd")
    prevent = [" ".join(str(int(c)) for c in status.prevent_restart)]
    assert prevent == ["2 3"]
    for version in (None, 252, 253):  # unknown or older: a fixed RestartSec=, the README says so
        assert restart_keys(version) == {"Restart": ["on-failure"], "RestartSec": ["5s"], "RestartSteps": [],
                                         "RestartMaxDelaySec": [], "RestartPreventExitStatus": prevent}, version
    assert restart_keys(254) == {"Restart": ["on-failure"], "RestartSec": ["5s"], "RestartSteps": ["4"],
                                 "RestartMaxDelaySec": ["60s"], "RestartPreventExitStatus": prevent}
    assert restart_keys(255, restart_delay=1)["RestartSteps"] == ["6"]
    assert restart_keys(255, restart=False)["RestartSteps"] == []  # no restart, nothing to grow
    assert restart_keys(255, restart_delay=0)["RestartSteps"] == []  # 0: at once, every time
    assert restart_keys(255, restart_delay=120)["RestartSteps"] == []  # past the cap: it is the cap
    assert [parse_version(t) for t in ("252.22-1~deb12u1\n", "v255", "254", "", "systemd")] == [
        252, 255, 254, None, None]


def test_this_systemds_verify_accepts_the_unit_for_its_version_and_rejects_the_newer_keys(tmp_path, verify):
    analyze = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, timeout=60)
    version = parse_version(analyze.stdout.removeprefix("systemd "))
    assert version is not None, analyze.stdout
    command = ["/usr/bin/python3", "-m", "servicehost", "run", "/srv/x.py"]
    unit = render_unit(options(), command, settings=UnitSettings(systemd_version=version))
    verify(write(tmp_path, unit.text, unit.name))
    if version < restarts.SYSTEMD_STEPS_VERSION:  # the harness's 252: the keys the gate holds back are unknown
        newer = render_unit(options(), command, settings=UnitSettings(systemd_version=254))
        (tmp_path / "newer").mkdir()
        with pytest.raises(AssertionError, match="RestartSteps"):
            verify(write(tmp_path / "newer", newer.text, newer.name))


# -- the SCM: failure actions that grow -------------------------------------------------------------
def test_the_scm_gets_one_restart_action_per_growing_step():
    assert failure_actions(InstallOptions(name="x")) == (120, [5000, 10000, 20000, 40000, 60000])
    assert failure_actions(InstallOptions(name="x", restart_delay=0.5))[1][:3] == [500, 1000, 2000]
    assert failure_actions(InstallOptions(name="x", restart=False)) == (0, [])


# -- a real supervisord ---------------------------------------------------------------------------
SERVICES = '''
import json, os, subprocess, sys, time
from pathlib import Path
from servicehost import Service


def note(what):
    with open(os.environ["TRACE"], "a") as fh:
        fh.write(json.dumps({"what": what, "pid": os.getpid(), "t": time.monotonic()}) + "\\n")


class CrashLoop(Service):
    """Crashes (exit 1) as soon as it runs while the file $CRASH exists; runs until stopped otherwise."""

    def start(self):
        note("start")

    def run(self, stop):
        if Path(os.environ["CRASH"]).exists():
            note("crash")
            raise RuntimeError("boom")
        stop.wait()


class FailsAtStart(Service):
    def start(self):
        note("start")
        raise RuntimeError("no database")  # exit 3, at once
'''


@pytest.fixture
def services(home) -> Path:  # noqa: F811 (the fixture above)
    path = home / "sh_restart_services.py"
    path.write_text(SERVICES)
    return path


def _install(manager: SupervisordManager, home: Path, services: Path, cls: str, name: str = "", env=(),
             **kw) -> InstallOptions:
    name = name or cls
    trace = home / f"{name}.trace"
    options = InstallOptions(name=name, stop_timeout=10, state_dir=str(home / "state" / name),
                             environment=(("TRACE", str(trace)), ("CRASH", str(home / "crash")), *env), **kw)
    manager.install(options, launch_command(f"{services}:{cls}", state_dir=options.state_dir))
    return options


def _trace(home: Path, name: str) -> list[dict]:
    path = home / f"{name}.trace"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _spawns(manager: SupervisordManager, name: str) -> int:
    """How often supervisord spawned ``name``, in its own words (its main log)."""
    return manager.rpc("readLog", 0, 0).count(f"spawned: '{name}' with pid")


@pytest.mark.real_manager
def test_exit_2_and_exit_3_are_never_retried_however_quick(home, services):
    manager = SupervisordManager()
    _install(manager, home, services, "FailsAtStart")
    _install(manager, home, services, "CrashLoop", name="BadSetting",
             env=(("SERVICEHOST_SHUTDOWN_TIMEOUT", "soon"),))  # exit 2 before any service code runs
    for name, code in (("FailsAtStart", ExitCode.START_FAILURE), ("BadSetting", ExitCode.CONFIG_ERROR)):
        with pytest.raises(StartupError, match=rf"{name} did not start: supervisord says EXITED \(exit status {code}\)"):
            manager.start(name, wait=HANG_GUARD)
        info = manager.rpc("getProcessInfo", name)
        # EXITED with a code in exitcodes is final: supervisord respawns EXITED only for other codes
        assert (info["statename"], info["exitstatus"]) == ("EXITED", code)
        assert _spawns(manager, name) == 1
        assert f"exited: {name} (exit status {code}; expected)" in manager.rpc("readLog", 0, 0)
        status = manager.status(name)
        assert (status.state, status.last_exit) == ("failed", code)
    assert [r["what"] for r in _trace(home, "FailsAtStart")] == ["start"]
    assert _trace(home, "BadSetting") == []


@pytest.mark.real_manager
def test_a_crash_loop_restarts_with_growing_gaps_and_a_stop_ends_the_wait(home, services):
    manager = SupervisordManager()
    (home / "crash").touch()
    _install(manager, home, services, "CrashLoop", restart_delay=1)
    manager.start("CrashLoop", wait=0)
    # starts 2, 3, 4, 5 follow waits of 1, 2, 4 and 8 s; the wait before the 5th is long enough to see
    def fourth_wait() -> ServiceStatus | None:
        """The status while the 5th process waits, early enough in its wait to stop it there."""
        trace = _trace(home, "CrashLoop")
        crashes = sum(r["what"] == "crash" for r in trace)
        status = manager.status("CrashLoop")
        if crashes != 4 or status.state != "restarting" or "crash 4 in a row" not in status.detail["note"]:
            return None
        left = int(re.search(r"waits (\d+)s more", status.detail["note"])[1])
        return status if left >= 2 else None

    seen = until(fourth_wait, "the 4th crash's wait")
    assert seen.pid
    trace = _trace(home, "CrashLoop")
    starts = [r for r in trace if r["what"] == "start"]
    crashes = [r for r in trace if r["what"] == "crash"]
    assert len({r["pid"] for r in starts}) == len(starts) == 4 and len(crashes) == 4
    gaps = [nxt["t"] - crash["t"] for crash, nxt in zip(crashes, starts[1:])]
    assert gaps == sorted(gaps) and len(set(gaps)) == 3, gaps  # each wait longer than the one before
    log = manager.logs("CrashLoop", 65536)
    assert [f"restarting after {n} crash(es) in a row" in log for n in (1, 2, 3, 4)] == [True] * 4

    # a stop ends the wait at once: a clean exit 0, never supervisord's SIGKILL after stopwaitsecs
    waiting_pid = seen.pid
    manager.stop("CrashLoop", wait=HANG_GUARD)
    stopped = manager.status("CrashLoop")
    assert (stopped.state, stopped.last_exit) == ("stopped", ExitCode.OK)
    assert "SIGTERM while waiting to restart: not starting" in manager.logs("CrashLoop", 65536)
    assert waiting_pid not in [r["pid"] for r in _trace(home, "CrashLoop")]  # it never started

    # an admin's start never waits: no new wait is logged and it gets running
    (home / "crash").unlink()
    waits = manager.logs("CrashLoop", 65536).count("restarting after")
    manager.start("CrashLoop", wait=HANG_GUARD)
    assert manager.status("CrashLoop").state == "running"
    assert manager.logs("CrashLoop", 65536).count("restarting after") == waits


# -- the README says what the code does ------------------------------------------------------------
def test_the_readme_states_the_policy_the_managers_are_given():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    from servicehost.platforms.supervisord import START_SECS, exit_codes

    assert f"exitcodes={','.join(map(str, exit_codes()))}" in readme and "exitcodes=0,4`" not in readme
    assert f"startsecs={START_SECS}" in readme
    assert f"up to {restarts.MAX_DELAY:g} s" in readme and f"lasted {restarts.HEALTHY:g} s" in readme
    assert f"after {restarts.reset_period(0):g} s without a failure" in readme
    assert f"systemd {restarts.SYSTEMD_STEPS_VERSION}" in readme
