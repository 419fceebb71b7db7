"""Installed services by name, beyond the contract suite (which drives every verb by NAME on every
manager): the pywin32 order ``python my_service.py install|status|remove``, a service installed by
an older servicehost (no install record), and a name installed under two managers at once.

supervisord is servicehost's own in a temp folder; the two-manager case runs in a real systemd as
PID 1 (``with-systemd.sh``) with a supervisord inside it. Timeouts are hang guards only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicehost.errors import ExitCode

from .harness import HANG_GUARD, status_fields, supervisord_env, supervisord_home, until
from .test_systemd_real import systemd  # noqa: F401 (the fixture: a real systemd as PID 1)

pytestmark = [pytest.mark.real_manager]

SCRIPT = '''\
import os
import servicehost
from servicehost import Service, StopToken


class ByName(Service):
    description = "servicehost by-name test service"

    def run(self, stop: StopToken) -> None:
        self.log.info("byname: mark=%s", os.environ.get("BYNAME_MARK", ""))
        if os.environ.get("TOKEN_FILE"):
            with open(os.environ["TOKEN_FILE"]) as fh:
                self.log.info("byname: token=%s", fh.read())
        stop.wait()


if __name__ == "__main__":
    servicehost.main(ByName)
'''


def _run(argv: list[str], env: dict[str, str], cwd: Path | str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=HANG_GUARD)
    if expect is not None:
        assert proc.returncode == expect, f"{argv}: exit {proc.returncode}, expected {expect}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def home() -> Iterator[tuple[Path, dict[str, str]]]:
    """servicehost's own supervisord in a temp folder, and the environment that points at it (no
    manager named: names are looked up where they are installed)."""
    with supervisord_home() as folder:
        env = {k: v for k, v in os.environ.items() if k != "SERVICEHOST_MANAGER"}
        yield folder, {**env, **supervisord_env(folder)}


def test_the_pywin32_order_installs_a_script_that_the_name_alone_then_reaches(home, tmp_path):
    folder, env = home
    script = tmp_path / "byname_script.py"
    script.write_text(SCRIPT)
    python = [sys.executable, str(script)]
    out = _run([*python, "install", "--start", "manual", "--state-dir", str(folder / "state"),
                "--env", "BYNAME_MARK=1"], env, tmp_path).stdout
    assert "installed ByName under supervisord" in out
    servicehost = [sys.executable, "-m", "servicehost"]
    row, = json.loads(_run([*servicehost, "list", "--json"], env, "/").stdout)
    assert (row["name"], row["target"]) == ("ByName", f"{script}:ByName")  # the script, not __main__
    _run([*servicehost, "start", "ByName"], env, "/")  # from anywhere, by its name
    assert status_fields(_run([*python, "status"], env, "/").stdout)["state"] == "running"  # python my_service.py status
    _run([*servicehost, "stop", "ByName"], env, "/")
    assert _run([*python, "status"], env, "/", expect=3).returncode == 3
    _run([*python, "remove"], env, tmp_path)
    assert "not-installed" in _run([*servicehost, "status", "ByName"], env, "/", expect=4).stdout


def test_a_service_installed_without_a_record_is_updated_once_with_its_target(home, tmp_path):
    folder, env = home
    script = tmp_path / "byname_old.py"
    script.write_text(SCRIPT)
    servicehost = [sys.executable, "-m", "servicehost"]
    _run([*servicehost, "install", str(script), "--name", "byold", "--start", "manual",
          "--state-dir", str(folder / "state"), "--env", "BYNAME_MARK=1"], env, tmp_path)
    program = folder / "sv" / "programs" / "byold.conf"
    text = program.read_text()
    assert "; servicehost: record = {" in text
    # What an older servicehost wrote: the same file without its record line.
    program.write_text("".join(line for line in text.splitlines(keepends=True) if "servicehost: record" not in line))
    row, = json.loads(_run([*servicehost, "list", "--json"], env, "/").stdout)
    assert row["name"] == "byold" and "older servicehost" in row["target"], row
    refused = _run([*servicehost, "update", "byold", "--env", "BYNAME_MARK=2"], env, "/", expect=ExitCode.CONFIG_ERROR)
    assert "give its TARGET once" in refused.stderr and "Traceback" not in refused.stderr
    _run([*servicehost, "start", "byold"], env, "/")  # every other verb needs only the name
    out = _run([*servicehost, "update", str(script), "--name", "byold", "--start", "manual",
                "--state-dir", str(folder / "state"), "--env", "BYNAME_MARK=2"], env, tmp_path).stdout
    assert "updated byold under supervisord" in out
    out = _run([*servicehost, "update", "byold", "--description", "now recorded"], env, "/").stdout
    assert out.splitlines()[0] == "changed: --description: servicehost by-name test service -> now recorded", out
    assert "BYNAME_MARK=\"2\"" in program.read_text()  # kept
    _run([*servicehost, "remove", "byold"], env, "/")


def test_update_by_name_keeps_a_secret_whose_file_was_deleted_after_install(home, tmp_path):
    folder, env = home
    script = tmp_path / "byname_secret.py"
    script.write_text(SCRIPT)
    token = tmp_path / "token"
    token.write_text("tok-1")
    token.chmod(0o600)
    servicehost = [sys.executable, "-m", "servicehost"]
    _run([*servicehost, "install", str(script), "--name", "bysecret", "--start", "manual",
          "--state-dir", str(folder / "state"), "--env", f"TOKEN=@{token}"], env, tmp_path)
    token.unlink()  # the copy is what the service reads: an admin may remove the source
    out = _run([*servicehost, "update", "bysecret", "--env", "BYNAME_MARK=2"], env, "/").stdout
    assert out.splitlines()[0] == "changed: --env BYNAME_MARK: (none) -> set", out
    _run([*servicehost, "start", "bysecret"], env, "/")
    until(lambda: "byname: token=tok-1" in _run([*servicehost, "logs", "bysecret"], env, "/").stdout,
          "the service to read its secret's copy")
    assert "byname: mark=2" in _run([*servicehost, "logs", "bysecret"], env, "/").stdout
    _run([*servicehost, "remove", "bysecret"], env, "/")


def test_a_name_installed_under_two_managers_says_where_and_takes_manager(systemd):  # noqa: F811
    sd = systemd
    lib = sd.base / "lib"
    if not (lib / "supervisor").exists():  # servicehost's own supervisord inside the container too
        import supervisor

        shutil.copytree(Path(supervisor.__file__).parent, lib / "supervisor",
                        ignore=shutil.ignore_patterns("__pycache__", "tests"))
    folder = sd.base / "byname"
    folder.mkdir(mode=0o755)
    script = folder / "byname_twice.py"
    script.write_text(SCRIPT)
    script.chmod(0o644)
    common = [str(script), "--name", "bytwice", "--start", "manual"]
    done = sd.cli("install", *common)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        done = sd.cli("install", *common, "--manager", "supervisord", "--state-dir", str(folder / "state"))
        assert done.returncode == 0, done.stdout + done.stderr
        listed = json.loads(sd.cli("list", "--json").stdout)
        assert sorted((r["name"], r["manager"]) for r in listed if r["name"] == "bytwice") == [
            ("bytwice", "supervisord"), ("bytwice", "systemd")], listed
        for verb in ("status", "start", "update", "remove"):
            proc = sd.cli(verb, "bytwice")
            assert proc.returncode == ExitCode.CONFIG_ERROR, (verb, proc.stdout, proc.stderr)
            assert re.search(r"bytwice is installed under systemd and supervisord: say which one with "
                             r"--manager systemd or --manager supervisord", proc.stderr), proc.stderr
        status = sd.cli("status", "bytwice", "--manager", "systemd")
        assert status_fields(status.stdout)["manager"] == "systemd", status.stdout + status.stderr
        removed = sd.cli("remove", "bytwice", "--manager", "supervisord")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        status = sd.cli("status", "bytwice")  # one manager left: found there without --manager
        assert status_fields(status.stdout)["manager"] == "systemd", status.stdout + status.stderr
    finally:
        for manager in ("supervisord", "systemd"):
            sd.cli("remove", "bytwice", "--manager", manager)
