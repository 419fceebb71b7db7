"""Example (b) as a real process: real files, real SQLite, real SIGTERM and SIGKILL.

The invariant under test: every file dropped is recorded exactly once (one row, right hash,
a compressed copy that decompresses to the original), whatever stops the service.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import sqlite3
import time
from pathlib import Path

from servicehost.errors import ExitCode

from .proc import EXAMPLES, HANG_GUARD, ServiceProcess

TARGET = str(EXAMPLES / "drop_folder.py")


def drop_files(folder: Path, count: int, size: int = 2048, start: int = 0) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for i in range(start, start + count):
        data = os.urandom(size // 2) + bytes(size // 2) if i % 7 else b"same content"  # duplicates too
        part = folder / f"f{i:05d}.bin.part"
        part.write_bytes(data)
        os.replace(part, folder / f"f{i:05d}.bin")  # dropped atomically, as a writer should
        made[f"f{i:05d}.bin"] = data
    return made


def rows(db: Path) -> list[tuple[str, str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT name, sha256, output FROM files").fetchall()
        except sqlite3.OperationalError:  # table not created yet
            return []


def wait_until(predicate, what: str, timeout: float = HANG_GUARD) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"hang guard: {what}")
        time.sleep(0.02)


def check_exactly_once(state: Path, made: dict[str, bytes]) -> None:
    got = rows(state / "files.sqlite3")
    names = [name for name, _, _ in got]
    assert len(names) == len(set(names)), "a file was recorded twice"
    assert sorted(names) == sorted(made), "a file was lost"
    for name, sha, output in got:
        assert sha == hashlib.sha256(made[name]).hexdigest()
        assert gzip.decompress(Path(output).read_bytes()) == made[name]
    assert not [p for p in (state / "drop").iterdir()], "files left in the drop folder"
    assert not list((state / "out").glob("*.part")), "a half-written output was left behind"


def start(state: Path, *extra: str) -> ServiceProcess:
    svc = ServiceProcess("run", TARGET, "--state-dir", str(state), "--scan-interval", "0.05",
                         "--settle", "0.2", "--log-file", "none", *extra)
    svc.ready()
    return svc


def test_all_files_processed_exactly_once_across_a_sigterm_restart(tmp_path):
    made = drop_files(tmp_path / "drop", 400, size=64 * 1024)
    with start(tmp_path, "--workers", "4") as svc:
        wait_until(lambda: len(rows(tmp_path / "files.sqlite3")) >= 20, "first rows")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK  # a requested stop drains what was accepted
    assert 20 <= len(rows(tmp_path / "files.sqlite3")) <= 400
    made |= drop_files(tmp_path / "drop", 50, start=400)  # more arrive while it is down
    with start(tmp_path) as svc:
        wait_until(lambda: len(rows(tmp_path / "files.sqlite3")) == len(made), "all rows")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK
        assert "stopped: exit code 0 (OK)" in "\n".join(svc.output())
    check_exactly_once(tmp_path, made)


def test_kill_9_loses_nothing_and_records_nothing_twice(tmp_path):
    made = drop_files(tmp_path / "drop", 300, size=256 * 1024)
    with start(tmp_path, "--workers", "8", "--compress-level", "9") as svc:
        wait_until(lambda: len(rows(tmp_path / "files.sqlite3")) >= 10, "first rows")
        svc.signal(signal.SIGKILL)
        assert svc.wait() == -signal.SIGKILL
    assert len(rows(tmp_path / "files.sqlite3")) < 300
    with start(tmp_path) as svc:
        wait_until(lambda: len(rows(tmp_path / "files.sqlite3")) == len(made), "all rows after kill -9")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK
    check_exactly_once(tmp_path, made)


def test_a_stop_deadline_leaves_unfinished_files_in_place_and_says_so(tmp_path):
    made = drop_files(tmp_path / "drop", 40, size=4 * 1024 * 1024)
    with start(tmp_path, "--workers", "2", "--compress-level", "9", "--shutdown-timeout", "0.05") as svc:
        wait_until(lambda: len(rows(tmp_path / "files.sqlite3")) >= 1, "first row")
        svc.signal(signal.SIGTERM)
        code = svc.wait()
        out = "\n".join(svc.output())
    if len(rows(tmp_path / "files.sqlite3")) < 40:  # the usual case: the deadline cut the drain
        assert code == ExitCode.STOP_INCOMPLETE, out
        assert "not finished at the stop deadline" in out
    with start(tmp_path) as svc:
        wait_until(lambda: len(rows(tmp_path / "files.sqlite3")) == len(made), "all rows after the deadline")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK
    check_exactly_once(tmp_path, made)


def test_an_unusable_state_dir_is_a_config_error_with_code_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    svc = ServiceProcess("run", TARGET, "--state-dir", str(blocker / "sub"), "--log-file", "none")
    assert svc.wait() == ExitCode.CONFIG_ERROR
    out = "\n".join(svc.output())
    assert "--state-dir" in out and "Traceback" not in out, out


def test_bad_paths_in_the_examples_own_settings_are_a_start_failure_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for flags in (["--drop-dir", str(blocker / "sub")], ["--out-dir", str(tmp_path / "state" / "drop")]):
        svc = ServiceProcess("run", TARGET, "--state-dir", str(tmp_path / "state"), "--log-file", "none", *flags)
        assert svc.wait() == ExitCode.START_FAILURE
        out = "\n".join(svc.output())
        assert "start failed" in out and "Traceback" not in out, out
