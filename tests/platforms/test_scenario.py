"""Issue 10's scenario, end to end, in a real systemd as PID 1 (``with-systemd.sh``), as a new admin
meets it: the demo run as root (``scripts/demo.sh``: a file dropped where it says is processed,
Ctrl-C stops it) → the same class installed under systemd with ``--name dropfolder-svc`` → started
by name → ``status`` exit 0 → stopped → exit 3 → removed → exit 4.

The demo keeps its state in the class's directory, the installed service in its own, named after
the install: neither touches the other's files, and the unit's StateDirectory= is not the one the
demo wrote as root (so nothing here depends on how systemd migrates a root-owned directory to a
DynamicUser= one). The service's first line in the journal already carries journald's priority
prefix, and its log file is in its LogsDirectory=. Timeouts are hang guards only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from servicehost.errors import ExitCode

from .test_systemd_real import HANG_GUARD, ROOT, status_of, systemd  # noqa: F401 (systemd: the fixture)

pytestmark = [pytest.mark.real_manager, pytest.mark.slow]

NAME = "dropfolder-svc"
UNIT = f"{NAME}.service"
GUARD_TICKS = int(HANG_GUARD * 10)  # 0.1 s each: the shell's own hang guard

#: The demo as a user runs it: in the background of a root shell, a file copied where it says, Ctrl-C.
DEMO = r"""
set -u
err=$(mktemp)
bash scripts/demo.sh 2>"$err" >/dev/null &
pid=$!
guard() {
  for _ in $(seq GUARD_TICKS); do
    if eval "$1"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "demo: the test timed out waiting for: $1" >&2; cat "$err" >&2; kill -9 "$pid"; exit 1
}
guard 'grep -q "ready: every service said so" "$err"'
drop=$(sed -n 's|^demo: drop a test file, in another terminal:  cp README.md \(.*\)/$|\1|p' "$err")
out=$(sed -n 's|^demo: then look at: \(.*\)/<sha256>.gz and .*|\1|p' "$err")
cp README.md "$drop/"
guard 'ls "$out"/*.gz >/dev/null 2>&1'
kill -INT "$pid"
wait "$pid"
echo "demo exit: $?" >>"$err"
cat "$err"
""".replace("GUARD_TICKS", str(GUARD_TICKS))

COUNT_ROWS = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from files').fetchone()[0])"


def test_the_demo_then_the_same_class_installed_by_name(systemd):
    sd = systemd
    # -- the demo, as root ---------------------------------------------------------------------------
    demo = sd.sh("bash", "-c", f"cd {ROOT} && {DEMO}", timeout=HANG_GUARD * 3)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    said = demo.stdout
    assert "demo: state in /var/lib/servicehost/dropfolder\n" in said, said
    assert "dropfolder keeps its state in /var/lib/servicehost/dropfolder (the default for dropfolder)" in said
    assert "demo exit: 0" in said, said
    demo_db = "/var/lib/servicehost/dropfolder/files.sqlite3"
    assert sd.sh(str(sd.python), "-c", COUNT_ROWS, demo_db, check=True).stdout.strip() == "1"

    # -- the same class, installed by name -----------------------------------------------------------
    folder = sd.base / "scenario"
    folder.mkdir(mode=0o755)
    target = folder / "drop_folder.py"
    shutil.copy(ROOT / "examples" / "drop_folder.py", target)
    target.chmod(0o644)
    sample = folder / "sample.txt"
    sample.write_text("a file for the installed service\n")
    sample.chmod(0o644)

    r = sd.cli("install", str(target), "--name", NAME)
    assert r.returncode == 0 and f"installed {NAME} under systemd" in r.stdout, r.stdout + r.stderr
    unit_text = sd.sh("cat", f"/usr/local/lib/systemd/system/{UNIT}", check=True).stdout
    assert f"StateDirectory=servicehost/{NAME}\n" in unit_text and f"LogsDirectory=servicehost/{NAME}\n" in unit_text
    assert "DynamicUser=yes" in unit_text

    r = sd.cli("start", NAME)  # by name alone, from wherever the admin is
    assert r.returncode == 0, r.stdout + r.stderr + sd.journal(UNIT)
    r = sd.cli("status", NAME)
    assert r.returncode == ExitCode.OK and status_of(r.stdout)["state"] == "running", r.stdout + r.stderr

    state = Path("/var/lib/servicehost") / NAME  # (inside the container: systemd's link to the private dir)
    sd.sh("cp", str(sample), f"{state}/drop/", check=True)
    sd.wait_until(lambda: sd.sh("sh", "-c", f"ls {state}/out/*.gz").returncode == 0, "the file processed", UNIT)

    # journald's priority prefix from the service's very first line (no timestamp of our own)
    entries = [json.loads(line) for line in sd.journal(UNIT, "-o", "json").splitlines()]
    stdout = [e for e in entries if e.get("_TRANSPORT") == "stdout"]
    assert stdout and stdout[0]["MESSAGE"] == "INFO servicehost.cli: running under systemd (NOTIFY_SOCKET set by systemd)"
    assert stdout[0]["PRIORITY"] == "6", stdout[0]
    # its own log file is in its LogsDirectory=, named after the install
    assert sd.sh("test", "-s", f"/var/log/servicehost/{NAME}/{NAME}.log").returncode == 0

    r = sd.cli("stop", NAME)
    assert r.returncode == 0, r.stdout + r.stderr
    r = sd.cli("status", NAME)
    assert r.returncode == 3 and status_of(r.stdout)["state"] == "stopped", r.stdout + r.stderr
    r = sd.cli("remove", NAME)
    assert r.returncode == 0, r.stdout + r.stderr
    r = sd.cli("status", NAME)
    assert r.returncode == 4 and status_of(r.stdout)["state"] == "not-installed", r.stdout + r.stderr

    # two directories, each with its own record: the install never wrote into the demo's
    assert sd.sh(str(sd.python), "-c", COUNT_ROWS, demo_db, check=True).stdout.strip() == "1"
    own_db = f"/var/lib/private/servicehost/{NAME}/files.sqlite3"  # kept after remove (no --purge)
    assert sd.sh(str(sd.python), "-c", COUNT_ROWS, own_db, check=True).stdout.strip() == "1"
