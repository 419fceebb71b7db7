"""The SQLite store keeps its write-ahead log bounded: the store thread checkpoints, and truncates
the log once it passes ``checkpoint_bytes``, however much work goes through."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servicehost.intake.store import open_store

LIMIT = 512 * 1024


@contextmanager
def wal_watch(path: Path) -> Iterator[list[int]]:
    """The biggest size ``path``'s -wal file had while the block ran (looked at every 2 ms)."""
    biggest = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.002):
            try:
                biggest[0] = max(biggest[0], os.stat(f"{path}-wal").st_size)
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield biggest
    finally:
        done.set()
        watcher.join()


def test_the_wal_stays_near_its_limit_while_twenty_times_that_goes_through(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    payload = "x" * 1000
    with wal_watch(path) as biggest, open_store(f"sqlite:///{path}?checkpoint_bytes={LIMIT}&checkpoint_interval=60") as store:
        for _ in range(40):
            store.submit_many([payload] * 250)
            jobs = store.claim("n", 250)
            for job in jobs:
                store.ack(job)
            store.flush()
        written = store.metrics()
        assert written.acked == 10_000  # ~10 MB of payloads in, and out again
        assert store.stats().ready == 0
    # one tick's worth may pass the limit before the checkpoint that follows it truncates the log
    assert 0 < biggest[0] <= 4 * LIMIT, biggest[0]
    assert not os.path.exists(f"{path}-wal") or os.stat(f"{path}-wal").st_size == 0
    # a small hot table: the jobs left it, and the file did not grow with what went through
    assert path.stat().st_size < 4 * 1024 * 1024


def test_a_store_that_commits_all_the_time_rewinds_its_log_long_before_the_limit(tmp_path: Path) -> None:
    """A log that is copied while commits go on must still start again from its beginning: else
    it grows to ``checkpoint_bytes`` (64 MiB by default) and the truncating checkpoint there holds
    every caller for as long as it copies (~100 ms)."""
    path = tmp_path / "jobs.sqlite3"
    payload = "y" * 2000
    with wal_watch(path) as biggest, open_store(f"sqlite:///{path}?checkpoint_interval=0.05") as store:  # limit: 64 MiB
        commits = 0
        while commits < 3000:  # a commit a submit (and a claim, an ack): pages of log each
            store.submit(payload)
            for job in store.claim("n", 1):
                store.ack(job).result(30)
            commits = store.metrics().commits
        written = commits * 4096  # at least a page of log a commit
    assert 0 < biggest[0] < written / 4, (biggest[0], written)  # rewound, many times over
