"""The SQLite store's schema is explicit and versioned (intake/schema/): made once, at the latest
version, by whichever process opens a new file first; a newer database, or a SQLite file that is
not a job store, is refused and left as it was."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from servicehost.intake.schema import APPLICATION_ID, LATEST
from servicehost.intake.store import SchemaError, StoreUnavailable, open_store


def test_a_new_file_gets_the_latest_schema_once_whoever_opens_it_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.sqlite3"
    errors: list[BaseException] = []

    def open_and_submit(i: int) -> None:
        try:
            with open_store(url) as store:
                store.submit(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 4
    conn.close()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        open_store(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST + 1
    conn.close()


def test_a_sqlite_file_that_is_not_a_job_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    """Another program's database at the store's path is refused before anything is changed in
    it: before, it was switched to WAL (a mode kept in the file) and only then refused."""
    path = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaError, match="not a servicehost intake store") as refused:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(refused.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite3"]  # no -wal, no -shm
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")] == ["orders"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_file_that_is_not_sqlite_is_refused_naming_it_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(bytes(range(256)) * 32)
    with pytest.raises(StoreUnavailable, match="not a SQLite database") as refused:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(refused.value)
    assert path.read_bytes() == bytes(range(256)) * 32
