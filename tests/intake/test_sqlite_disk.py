"""The SQLite store when its disk fails it: a full file system, a read-only one (real tmpfs mounts).

Producers get a clear error (StoreFull / StoreUnavailable) and nothing of a refused call is
written; acks made meanwhile are kept and committed once space is back; the database stays
whole (integrity_check) and work continues. Not root (a laptop): skipped, saying so.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicehost.intake.sqlite import SQLiteStore
from servicehost.intake.store import StoreFull, StoreUnavailable, open_store

HANG = 30.0  # a hang guard, never a measure


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of our own (root only: CI runs as root, where this never skips)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=False)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def payload(i: int) -> bytes:
    return i.to_bytes(4, "big") * 4096  # 16 KiB, each its own


def test_a_full_disk_refuses_submits_whole_and_work_continues_when_space_is_back(small_fs: Path) -> None:
    url = f"sqlite:///{small_fs}/jobs.sqlite3?checkpoint_bytes=262144"
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    before = store.submit_many([payload(i) for i in range(10)])
    held = store.claim("n", 5)
    ballast = small_fs / "ballast"
    fill(ballast)

    accepted: dict[int, int] = {}
    refusal: StoreFull | None = None
    for i in range(100, 400):
        try:
            accepted[store.submit(payload(i), timeout=HANG)] = i
        except StoreFull as exc:
            refusal = exc
            break
    assert refusal is not None, "the disk never filled"
    assert "full" in str(refusal) and "nothing was written" in str(refusal)
    with pytest.raises(StoreFull):
        store.submit_many([payload(i) for i in range(1000, 1010)], timeout=HANG)
    acks = [store.ack(job) for job in held]  # kept until they can be written

    ballast.unlink()
    assert [a.result(HANG) for a in acks] == [True] * 5
    later = store.submit(payload(2000), timeout=HANG)
    store.close()

    reopened = open_store(url)
    jobs = reopened.claim("n", 1000)
    got = {job.id: job.payload for job in jobs}
    expected = {job_id: payload(i) for job_id, i in accepted.items()}
    expected.update({job_id: payload(i) for job_id, i in zip(before[5:], range(5, 10), strict=True)})
    expected[later] = payload(2000)
    assert got == expected  # every accepted job, intact; nothing of the refused ones
    reopened.close()
    conn = sqlite3.connect(small_fs / "jobs.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_a_read_only_file_system_gives_a_clear_error_and_work_continues_once_writable(small_fs: Path) -> None:
    # A file system cannot be remounted read-only under a writer (the mount is busy): the store
    # meets it when it opens, as after a reboot onto a read-only disk.
    url = f"sqlite:///{small_fs}/jobs.sqlite3"
    with open_store(url) as store:
        first = store.submit({"n": 1})
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            with open_store(url) as store:
                store.submit({"n": 2}, timeout=HANG)
        assert "jobs.sqlite3" in str(caught.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    with open_store(url) as store:
        second = store.submit({"n": 3}, timeout=HANG)
        assert [(j.id, j.payload) for j in store.claim("n", 10)] == [(first, {"n": 1}), (second, {"n": 3})]


def test_a_store_that_cannot_be_created_says_where_and_why(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailable) as caught:
        open_store(f"sqlite:///{blocker}/sub/jobs.sqlite3")
    assert str(blocker) in str(caught.value)


def test_the_database_is_private_by_default(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/new/jobs.sqlite3") as store:
        store.submit(1)
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
        for name in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"):
            assert (tmp_path / "new" / name).stat().st_mode & 0o777 == 0o600, name
