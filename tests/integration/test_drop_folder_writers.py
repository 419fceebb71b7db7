"""The drop folder as people really fill it (issue 7, items 9 and 10): slow in-place writers,
writers that close and reopen, ``cp``, atomic renames, long and undecodable names, symlinks
and FIFOs; and the feedback the demo gives. Real processes, real files, real SQLite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time


from servicehost.errors import ExitCode

from .drops import (
    all_recorded, check_exactly_once, content, drop_atomically, raw, rows, start, wait_until,
    write_in_place,
)


def stop(svc) -> str:
    svc.signal(signal.SIGTERM)
    assert svc.wait() == ExitCode.OK, "\n".join(svc.output())
    return "\n".join(svc.output())


def writers(*jobs) -> list[threading.Thread]:
    threads = [threading.Thread(target=fn, args=args, kwargs=kw) for fn, args, kw in jobs]
    for t in threads:
        t.start()
    return threads


def test_slow_writers_pausing_longer_than_the_settle_interval_are_never_taken_early(tmp_path):
    """A file still open for writing is not taken, however long its writer pauses."""
    drop = tmp_path / "drop"
    made = {raw(f"slow{i}.bin"): content(i, 96 * 1024) for i in range(4)}
    with start(tmp_path, settle=0.2) as svc:
        threads = writers(*[(write_in_place, (drop, name, data, 6, 0.5 + 0.1 * i), {})
                            for i, (name, data) in enumerate(made.items())])
        for t in threads:
            t.join()
        wait_until(lambda: all_recorded(tmp_path, made), "slow writes recorded")
        stop(svc)
    check_exactly_once(tmp_path, made)


def test_writers_that_close_and_reopen_are_taken_only_once_complete(tmp_path):
    drop = tmp_path / "drop"
    made = {raw(f"append{i}.log"): content(i, 64 * 1024) for i in range(3)}
    with start(tmp_path, settle=1.0) as svc:
        threads = writers(*[(write_in_place, (drop, name, data, 5, 0.02), {"reopen": True})
                            for name, data in made.items()])
        for t in threads:
            t.join()
        wait_until(lambda: all_recorded(tmp_path, made), "appended files recorded")
        stop(svc)
    check_exactly_once(tmp_path, made)


def test_cp_records_the_hash_of_the_stored_bytes(tmp_path):
    """``cp`` writes in place, fast from a disk or slowly from a slow source (here a pipe fed in
    pieces); the hash and the gzip come from one read of the same, complete bytes."""
    source = tmp_path / "src"
    source.mkdir()
    made = {}
    for i in range(2):
        data = content(i, 40 * 1024 * 1024)
        (source / f"big{i}.bin").write_bytes(data)
        made[raw(f"big{i}.bin")] = data
    slow = content(9, 4 * 1024 * 1024)
    made[raw("from-a-pipe.bin")] = slow
    with start(tmp_path, "--workers", "2", settle=0.3) as svc:
        for i in range(2):
            subprocess.run(["cp", str(source / f"big{i}.bin"), str(tmp_path / "drop")], check=True)
        cp = subprocess.Popen(["cp", "/dev/stdin", str(tmp_path / "drop" / "from-a-pipe.bin")],
                              stdin=subprocess.PIPE)
        step = len(slow) // 8
        for n in range(0, len(slow), step):
            cp.stdin.write(slow[n:n + step])
            cp.stdin.flush()
            time.sleep(0.4)  # a slow source: longer than the settle interval
        cp.stdin.close()
        assert cp.wait(60) == 0
        wait_until(lambda: all_recorded(tmp_path, made), "cp'd files recorded")
        stop(svc)
    check_exactly_once(tmp_path, made)


def test_a_renamed_file_is_taken_at_once_and_an_in_place_one_waits_for_the_settle_interval(tmp_path):
    drop = tmp_path / "drop"
    with start(tmp_path, settle=600) as svc:
        write_in_place(drop, "written.bin", b"in place", 1, 0)  # complete and closed, not settled
        drop_atomically(drop, "renamed.bin", b"renamed in")
        wait_until(lambda: all_recorded(tmp_path, {raw("renamed.bin"): b""}), "the renamed file")
        assert [name for name, _, _ in rows(tmp_path)] == [raw("renamed.bin")]
        assert (drop / "written.bin").read_bytes() == b"in place"  # still settling: not taken
        stop(svc)
    assert (drop / "written.bin").exists()


def test_long_undecodable_and_control_character_names_are_processed_not_failed(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    names = [b"a" * n for n in (231, 240, 251, 255)]
    names += ["é".encode() * 127, b"\xff\xfe not utf-8.bin", b"caf\xe9.txt", b"\x80" * 255,
              b"line\nbreak.txt", b"tab\tand\x1b[31mred"]
    made = {name: content(i, 8 * 1024) for i, name in enumerate(names)}
    for name, data in made.items():
        drop_atomically(drop, name, data)
    with start(tmp_path, "--log-level", "DEBUG") as svc:
        wait_until(lambda: all_recorded(tmp_path, made), "every odd name recorded")
        out = stop(svc)
    check_exactly_once(tmp_path, made)
    assert "Traceback" not in out, out
    # a name never breaks a log line: control characters are escaped
    assert not any(line.startswith("break.txt") for line in out.splitlines()), out
    assert "line\\nbreak.txt" in out, out


def test_a_symlink_goes_to_failed_unfollowed_and_a_fifo_blocks_nothing(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the drop folder")
    (drop / "link").symlink_to(secret)
    (drop / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(drop / "fifo")
    made = {raw(f"f{i}"): content(i, 4096) for i in range(5)}
    for name, data in made.items():
        drop_atomically(drop, name, data)
    with start(tmp_path) as svc:
        wait_until(lambda: all_recorded(tmp_path, made), "regular files recorded")
        wait_until(lambda: sorted(os.listdir(tmp_path / "failed")) == ["dangling", "link"], "symlinks failed")
        out = stop(svc)
    assert secret.read_bytes() == b"not for the drop folder"
    assert (tmp_path / "failed" / "link").is_symlink()
    assert {name for name, _, _ in rows(tmp_path)} == set(made)
    assert os.listdir(drop) == ["fifo"]  # not a file: left alone, and it hung nothing
    assert re.search(r"link.*symbolic link", out), out


def test_without_inotify_a_settle_interval_still_waits_for_slow_writers(tmp_path):
    """``--watch scan`` is what systems without inotify get: stat only."""
    drop = tmp_path / "drop"
    made = {raw(f"s{i}.bin"): content(i, 32 * 1024) for i in range(3)}
    with start(tmp_path, settle=1.5, SERVICEHOST_WATCH="scan") as svc:
        threads = writers(*[(write_in_place, (drop, name, data, 5, 0.05), {}) for name, data in made.items()])
        drop_atomically(drop, "renamed.bin", b"renamed")
        made[raw("renamed.bin")] = b"renamed"
        for t in threads:
            t.join()
        wait_until(lambda: all_recorded(tmp_path, made), "every file recorded")
        out = stop(svc)
    check_exactly_once(tmp_path, made)
    assert "scan" in out


def test_the_demo_says_where_results_land_and_reports_progress(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    made = {raw(f"p{i}.txt"): content(i, 4096) for i in range(12)}
    with start(tmp_path, "--log-level", "DEBUG", SERVICEHOST_SUMMARY_INTERVAL="0.2") as svc:
        first = svc.expect(r"watching ")
        assert "out" in first.string and "files.sqlite3" in first.string
        for name, data in made.items():
            drop_atomically(drop, name, data)
        wait_until(lambda: all_recorded(tmp_path, made), "all recorded")
        svc.expect(r"\d+ processed, \d+ failed, \d+ pending")  # while files flow, before any stop
        out = stop(svc)
    per_file = [line for line in out.splitlines() if re.search(r"DEBUG.*processed p\d+\.txt", line)]
    assert len(per_file) == len(made), out
    last = [line for line in out.splitlines() if re.search(r"\d+ processed, \d+ failed, \d+ pending", line)][-1]
    assert "12 processed, 0 failed, 0 pending" in last, out
    assert out.index(last) > out.index("stop requested")
    check_exactly_once(tmp_path, made)


def test_a_summary_is_logged_at_the_default_level(tmp_path):
    made = {raw(f"q{i}"): content(i, 2048) for i in range(3)}
    (tmp_path / "drop").mkdir()
    for name, data in made.items():
        drop_atomically(tmp_path / "drop", name, data)
    with start(tmp_path) as svc:
        wait_until(lambda: all_recorded(tmp_path, made), "all recorded")
        out = stop(svc)
    assert "3 processed, 0 failed, 0 pending" in out, out
    assert "DEBUG" not in out


def test_stale_temporary_outputs_of_a_crash_are_removed_at_start(tmp_path):
    out = tmp_path / "out"
    out.mkdir(parents=True)
    (out / ".0123456789abcdef.1.2.part").write_bytes(b"half")
    with start(tmp_path) as svc:
        stop(svc)
    assert not list(out.glob(".*.part"))
