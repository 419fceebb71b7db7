"""``servicehost jobs NAME ...`` against an installed intake service, under the real managers.

The admin names the service only: ``jobs`` finds its store where the manager launches it (its
state directory, or the ``--store`` it was installed with), submits to it while the service runs
and while it is stopped, and the service then runs those jobs. Under systemd the service runs as
its own dynamic user while the admin is root: a store the admin's command opened (or created)
first must stay the service's to write. supervisord is servicehost's own in a temp folder; systemd
is a real PID 1 (``with-systemd.sh``). Timeouts are hang guards only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import HANG_GUARD, supervisord_env, supervisord_home, until
from .test_systemd_real import ROOT, Systemd, systemd  # noqa: F401 (the fixture: a real systemd as PID 1)

pytestmark = [pytest.mark.real_manager]

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def _stats(cli: Cli, name: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(_ok(cli("jobs", name, "stats", "--json")))
    return doc


def _submit(cli: Cli, name: str, who: str) -> int:
    out = _ok(cli("jobs", name, "submit", json.dumps({"name": who}))).strip()
    return int(out.split()[-1])


def _drive(cli: Cli, name: str, out_file: Callable[[int], str | None], restart: Callable[[], object]) -> None:
    """What an admin does by name: submit while running (the job runs), submit while stopped
    (kept; runs after the start), a delayed job listed as delayed, stats that add up."""
    first = _submit(cli, name, "Ada")
    until(lambda: out_file(first) is not None, "the running service to run the job submitted by name")
    assert f"Hello, Ada! (job {first}, attempt 1)" in (out_file(first) or "")
    _ok(cli("stop", name))
    second = _submit(cli, name, "Grace")  # the service is down: the store keeps it
    stats = _stats(cli, name)
    assert (stats["ready"], stats["running"]) == (1, 0), stats
    later = int(_ok(cli("jobs", name, "submit", '"later"', "--delay", "3600")).split()[-1])
    listed = json.loads(_ok(cli("jobs", name, "list", "--json")))
    assert sorted((j["id"], j["state"]) for j in listed) == [(second, "ready"), (later, "delayed")], listed
    restart()
    until(lambda: out_file(second) is not None, "the restarted service to run the job submitted while it was down")
    assert "Hello, Grace!" in (out_file(second) or "")
    stats = _stats(cli, name)
    assert (stats["ready"], stats["running"], stats["delayed"], stats["dead"]) == (0, 0, 1, 0), stats


@pytest.fixture
def home() -> Iterator[tuple[Path, dict[str, str]]]:
    with supervisord_home() as folder:
        env = {k: v for k, v in os.environ.items() if k != "SERVICEHOST_MANAGER"}
        yield folder, {**env, **supervisord_env(folder)}


@pytest.mark.parametrize("where", ["state-dir", "store"])
def test_jobs_by_name_under_supervisord(home, tmp_path, where):
    folder, env = home
    script = tmp_path / "jobs_service.py"
    shutil.copy(ROOT / "examples" / "jobs.py", script)
    name = f"jobs-{where}"
    state = folder / "state" / name
    extra = ["--store", f"sqlite:///{tmp_path / 'elsewhere' / 'jobs.sqlite3'}"] if where == "store" else []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "servicehost", *args], env=env, cwd="/", capture_output=True,
                              text=True, timeout=HANG_GUARD, stdin=subprocess.DEVNULL)

    _ok(cli("install", str(script), "--name", name, "--start", "manual", "--state-dir", str(state), *extra))
    try:
        _ok(cli("start", name))
        stats = _stats(cli, name)
        wanted = tmp_path / "elsewhere" / "jobs.sqlite3" if where == "store" else state / "jobs.sqlite3"
        assert stats["store"] == f"sqlite:///{wanted}", stats  # the service's own store, found by its name

        def out_file(job_id: int) -> str | None:
            path = state / "out" / f"{job_id}.txt"
            return path.read_text() if path.exists() else None

        _drive(cli, name, out_file, lambda: _ok(cli("start", name)))
    finally:
        cli("remove", name)


def test_jobs_by_name_under_systemd_as_root_for_a_dynamic_user(systemd):  # noqa: F811
    sd: Systemd = systemd
    script = sd.base / "jobs_service.py"
    shutil.copy(ROOT / "examples" / "jobs.py", script)
    script.chmod(0o644)
    name = "jobsd"
    cli = sd.cli
    _ok(cli("install", str(script), "--name", name, "--start", "manual"))
    try:
        # Before its first start: the admin's submit (as root) makes the store; the service, its
        # own unprivileged user, must still own and write it once it starts.
        early = _submit(cli, name, "Early")
        _ok(cli("start", name))
        stats = _stats(cli, name)
        store = str(stats["store"])
        assert store.startswith("sqlite:///") and store.endswith("/jobs.sqlite3"), stats
        state = Path(store[len("sqlite:///"):]).parent

        def out_file(job_id: int) -> str | None:
            proc = sd.sh("cat", str(state / "out" / f"{job_id}.txt"))
            return proc.stdout if proc.returncode == 0 else None

        sd.wait_until(lambda: out_file(early) is not None, "the service to run the job submitted before its first "
                      "start", f"{name}.service")
        owners = sd.sh("stat", "-L", "-c", "%U %n", str(state), *(f"{state}/jobs.sqlite3{s}" for s in ("", "-wal", "-shm")))
        assert owners.returncode == 0 and "root " not in owners.stdout, owners.stdout + owners.stderr
        _drive(cli, name, out_file, lambda: _ok(cli("start", name)))
    finally:
        cli("remove", name, "--purge")
