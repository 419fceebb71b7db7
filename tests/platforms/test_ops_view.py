"""Seeing inside a running service (issue 12): ``servicehost status NAME`` as one screen with live
counters, ``--json``/``--watch``, and ``drain``/``resume`` — the same through every carrier.

One real service (``OPS_SERVICE``: a pool its ``run()`` keeps full, a timer, a task in 50 that
fails) is run in a terminal (found by its control channel), under a real supervisord and under a
real systemd (``with-systemd.sh``). Each time: two ``status`` calls show counters that changed;
the screen has its header, component table, timer line and last error; a drain with a full queue
(>= 256 tasks) holds intake while the queued work finishes, ``status`` then shows nothing moving,
and ``resume`` goes on with nothing lost (every task accepted is done or failed at the stop, which
exits 0). Under Wine's real SCM, a drain through the named pipe keeps the service RUNNING for
the SCM while ``status`` says ``draining``, and ``resume`` goes on (the pipe's own test, with moving
counters, is ``test_windows_pipe.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from servicehost.platforms.base import StatusCode

from .harness import HANG_GUARD, status_fields, until
from .test_systemd_real import systemd  # noqa: F401 (the fixture: a real systemd as PID 1)
from .test_windows_pipe import piped, wine  # noqa: F401 (Wine's real SCM, the pipe's service installed)

ROOT = Path(__file__).resolve().parents[2]

OPS_SERVICE = textwrap.dedent('''
    """A pool its run() keeps full (tasks of 20 ms, one in 50 fails), and a timer: live counters."""
    import time

    from servicehost import PeriodicTimer, QueueClosed, Service, StopToken, ThreadPool


    def work(i):
        time.sleep(0.02)
        if i % 50 == 49:
            raise ValueError(f"task {i} fails on purpose")


    class Ops(Service):
        name = "{name}"
        version = "2.5"

        def start(self):
            self.pool = self.use(ThreadPool(4, name="ops-pool", queue_size=512))
            self.use(PeriodicTimer(0.3, lambda: None, name="ops-timer"))

        def run(self, stop: StopToken):
            i = 0
            try:
                while not stop.stop_requested:
                    self.pool.submit(work, i)  # blocks while the queue is full, or held by a drain
                    i += 1
            except QueueClosed:  # the stop closed intake
                pass
''')

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _doc(cli: Cli, name: str, *, answering: bool = True) -> dict:
    """``status --json``; ``answering``: the service must be running (else: {} until it is)."""
    proc = cli("status", name, "--json")
    if not answering and proc.returncode != 0:
        return {}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _pool(doc: dict) -> dict:
    return next(c for c in doc["counters"] if c["name"] == "ops-pool")


def check_live_status_drain_resume(cli: Cli, name: str, manager: str) -> None:
    """The steps every carrier passes (module docstring)."""
    first = until(lambda: (d := _doc(cli, name, answering=False)).get("counters") and _pool(d)["completed"] > 0 and d,
                  "the service to answer with counters")
    second = until(lambda: (d := _doc(cli, name)) and _pool(d)["completed"] > _pool(first)["completed"] and d,
                   "the counters to move between two calls")
    assert (second["manager"], second["state"], second["version"]) == (manager, "running", "2.5"), second
    pool = _pool(second)
    assert (pool["kind"], pool["workers"], pool["queue_capacity"]) == ("ThreadPool", 4, 512), pool
    assert second["state_since"] and second["healthy"] is True and second["python"], second

    # The first failure (task 49, ~0.25 s in) can come before the timer's first run (0.3 s): wait for both.
    text = until(lambda: (p := cli("status", name)).returncode == 0 and "last error:" in p.stdout
                 and "ops-timer: last run ok at" in p.stdout and p.stdout,
                 "a failed task to show as the last error, and the timer's first run")
    fields = status_fields(text)
    assert fields["state"] == "running" and fields["version"].startswith("2.5 (servicehost "), text
    assert "since" in fields and fields["manager"] == manager, text
    table = text.split("\n\n")[1].splitlines()
    assert table[0].split() == ["component", "kind", "busy", "queue", "done", "failed", "p50", "p95"], text
    row = next(line.split() for line in table if line.startswith("ops-pool"))
    assert row[1] == "ThreadPool" and row[2].endswith("/4") and row[3].endswith("/512"), text
    assert row[6].endswith("s") and row[7].endswith("s"), text  # sampled run times
    assert any(line.strip().startswith("ops-timer: last run ok at") and "next at" in line for line in table), text
    assert "ValueError: task" in fields["last error"] and "fails on purpose" in fields["last error"], text

    # A drain with a full queue: intake holds, the queued work finishes, nothing moves until resume.
    full = until(lambda: (d := _doc(cli, name)) and _pool(d)["queue_depth"] >= 256 and d, "a queue of >= 256 tasks")
    drained = cli("drain", name, "--wait", str(HANG_GUARD))
    assert drained.returncode == 0 and "drained" in drained.stdout, drained.stdout + drained.stderr
    held = _doc(cli, name)
    assert held["state"] == "draining" and held["status_code"] == 0, held
    pool = _pool(held)
    assert (pool["queue_depth"], pool["in_flight"]) == (0, 0), pool
    assert pool["completed"] + pool["failed"] == pool["submitted"] >= _pool(full)["submitted"], pool
    again = _pool(_doc(cli, name))
    assert (again["submitted"], again["completed"]) == (pool["submitted"], pool["completed"]), again
    assert "state:     draining" in cli("status", name).stdout
    resumed = cli("resume", name)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = until(lambda: (d := _doc(cli, name)) and _pool(d)["submitted"] > pool["submitted"] + 8 and d,
                  "intake to open again after resume")
    assert after["state"] == "running" and _pool(after)["completed"] > pool["completed"], after


# -- a run in a terminal --------------------------------------------------------------------------------
@pytest.fixture
def terminal(tmp_path: Path):
    if not sys.platform.startswith("linux"):
        pytest.skip("a run in a terminal serves its control channel on Linux only")
    from .harness import need_supervisor_package

    need_supervisor_package()
    name = f"shops{os.getpid() % 100000}"
    target = tmp_path / "ops_service.py"
    target.write_text(OPS_SERVICE.replace("{name}", name))
    env = {**os.environ, "SERVICEHOST_RUNTIME_DIR": str(tmp_path / "run"),
           "SERVICEHOST_SUPERVISORD_HOME": str(tmp_path / "sv"), "PYTHONPATH": str(ROOT / "src")}
    env.pop("SERVICEHOST_MANAGER", None)
    return name, target, env


def test_a_run_in_a_terminal_shows_live_counters_drains_and_resumes(terminal):
    name, target, env = terminal

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "servicehost", *args],
                              env={**env, "SERVICEHOST_MANAGER": "supervisord"}, capture_output=True, text=True,
                              timeout=HANG_GUARD, stdin=subprocess.DEVNULL, cwd=ROOT)

    run = subprocess.Popen([sys.executable, "-m", "servicehost", "run", str(target), "--log-file", "none"],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT)
    try:
        check_live_status_drain_resume(cli, name, "foreground")
        assert _doc(cli, name)["pid"] == run.pid
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=HANG_GUARD)
    assert run.returncode == 0, err  # every accepted task finished: nothing was left at the stop
    assert "draining: intake held" in err and "drained" in err and "resumed after a drain" in err, err
    gone = cli("drain", name)
    assert gone.returncode == 2 and "no run in a terminal answers by that name" in gone.stderr, gone.stderr


def test_status_watch_redraws_until_ctrl_c(terminal):
    """``--watch --json``: one document a line, each read anew; Ctrl-C ends it with the last code."""
    name, target, env = terminal
    env = {**env, "SERVICEHOST_MANAGER": "supervisord"}
    run = subprocess.Popen([sys.executable, "-m", "servicehost", "run", str(target), "--log-file", "none"],
                           env={k: v for k, v in env.items() if k != "SERVICEHOST_MANAGER"},
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    watch = None
    try:
        until(lambda: subprocess.run([sys.executable, "-m", "servicehost", "status", name], env=env, cwd=ROOT,
                                     capture_output=True, timeout=HANG_GUARD).returncode == 0, "the run to answer")
        watch = subprocess.Popen([sys.executable, "-m", "servicehost", "status", name, "--watch", "--json",
                                  "--interval", "0.2"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert watch.stdout is not None
        docs = [json.loads(watch.stdout.readline()) for _ in range(3)]
        assert all(d["state"] == "running" and d["manager"] == "foreground" for d in docs), docs
        done = [_pool(d)["completed"] for d in docs]
        assert done == sorted(done) and done[-1] > done[0], done
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=HANG_GUARD)
        assert watch.returncode == 0 and "Traceback" not in err, err
    finally:
        for proc in (watch, run):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=HANG_GUARD)


# -- under a real supervisord -----------------------------------------------------------------------------
def test_under_supervisord_status_shows_live_counters_drains_and_resumes(tmp_path):
    from .harness import supervisord_env, supervisord_home

    name = f"shopssv{os.getpid() % 100000}"
    with supervisord_home() as home:
        target = tmp_path / "ops_service.py"
        target.write_text(OPS_SERVICE.replace("{name}", name))
        env = {**os.environ, **supervisord_env(home), "SERVICEHOST_MANAGER": "supervisord",
               "PYTHONPATH": str(ROOT / "src")}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "servicehost", *args], env=env, capture_output=True,
                                  text=True, timeout=HANG_GUARD, stdin=subprocess.DEVNULL, cwd=ROOT)

        r = cli("install", str(target), "--start", "manual", "--state-dir", str(home / "state"))
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            assert cli("start", name).returncode == 0
            check_live_status_drain_resume(cli, name, "supervisord")
            stopped = cli("stop", name)
            assert stopped.returncode == 0, stopped.stderr
            doc = json.loads(cli("status", name, "--json").stdout)
            assert doc["state"] == "stopped" and doc["last_exit"]["code"] == 0, doc  # nothing left at the stop
        finally:
            cli("remove", name)


# -- under a real systemd ---------------------------------------------------------------------------------
def test_under_systemd_status_shows_live_counters_drains_and_resumes(systemd):  # noqa: F811
    sd = systemd
    name = "shopssd"
    target = sd.base / "ops_service.py"
    target.write_text(OPS_SERVICE.replace("{name}", name))
    target.chmod(0o644)
    r = sd.cli("install", str(target), "--start", "manual", "--log-file", "none")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        assert sd.cli("start", name).returncode == 0
        check_live_status_drain_resume(sd.cli, name, "systemd")
        # systemd's own view: the STATUS= line the service sends (php-fpm style, per component).
        status_text = sd.show(f"{name}.service")["StatusText"]
        assert status_text.startswith("running; ops-pool: ") and " busy, " in status_text, status_text
        stopped = sd.cli("stop", name)
        assert stopped.returncode == 0, stopped.stderr
        doc = json.loads(sd.cli("status", name, "--json").stdout)
        assert doc["state"] == "stopped" and doc["status_code"] == StatusCode.NOT_RUNNING, doc
    finally:
        sd.cli("remove", name)


# -- under the Windows SCM (Wine), through the named pipe ------------------------------------------------
@pytest.mark.real_manager
def test_under_the_scm_a_drain_through_the_named_pipe_keeps_the_service_running(wine, piped):  # noqa: F811
    """The pipe's service (``windows_pipe_service.py``: a task every 20 ms, one stuck on purpose, so
    no drain ever ends: ``drain`` without ``--wait``). The SCM keeps SERVICE_RUNNING (a drain is not
    a pause); status says ``draining``; intake holds; ``resume`` goes on."""
    name, target = piped

    def doc() -> dict:
        proc = wine.servicehost("status", name, "--json", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    def pool(d: dict) -> dict:
        return next(c for c in d["counters"] or () if c["name"] == "pipepool")

    until(lambda: doc()["counters"], "the service to answer on its pipe")
    said = wine.servicehost("drain", name)
    assert said.returncode == 0 and f"{name}: draining (" in said.stdout, said.stdout + said.stderr
    held = doc()
    assert (held["state"], held["sub_state"], held["status_code"]) == ("draining", "RUNNING", 0), held
    quiet = until(lambda: (p := pool(doc()))["queue_depth"] == 0 and p, "the queued tasks to finish")
    assert pool(doc())["submitted"] == quiet["submitted"], "intake held: run() waits in submit"
    assert "state:     draining" in wine.status(name).stdout
    assert wine.servicehost("resume", name).returncode == 0
    until(lambda: pool(doc())["submitted"] > quiet["submitted"], "intake to open again after resume")
    assert doc()["state"] == "running"
    wine.servicehost("stop", target, "--name", name)
