"""The SQLite intake store's schema: explicit versions, applied in order, never guessed.

A database is ours when its ``application_id`` is :data:`APPLICATION_ID`; its ``user_version`` is
the schema version it holds. :func:`migrate` brings a database (an empty file included) up to
:data:`LATEST`, each step in one ``BEGIN IMMEDIATE`` transaction, so two processes opening one new
file at once create it once. A database newer than this code, or a file that is not an intake
store, is refused (:class:`~servicehost.intake.store.SchemaError`), never altered.

Add a version: a module ``vN.py`` with ``VERSION``, ``DESCRIPTION`` and ``SQL`` (what turns
version N-1 into N), and its name in :data:`VERSIONS`.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from types import ModuleType
from typing import Any

from ..store import SchemaError, StoreURL, StoreUnavailable, redact

APPLICATION_ID = 0x53484A42  # "SHJB": a servicehost job store
VERSIONS = ("v1",)
LATEST = len(VERSIONS)


def _step(version: int) -> ModuleType:
    module = importlib.import_module(f".{VERSIONS[version - 1]}", __name__)
    assert module.VERSION == version, module.__name__
    return module


def version_of(conn: sqlite3.Connection) -> int:
    """The schema version a database holds (0: empty); SchemaError when it is not ours. Its
    reads see one snapshot: outside a transaction each statement would see its own, and a file
    another process migrates meanwhile would look like tables without our application id."""
    if conn.in_transaction:
        return _version_in(conn)
    conn.execute("BEGIN")
    try:
        version = _version_in(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version


def _version_in(conn: sqlite3.Connection) -> int:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()[0]
        if tables:
            raise SchemaError("the database holds tables but is not a servicehost intake store")
        return 0
    if app_id != APPLICATION_ID:
        raise SchemaError(f"the database is not a servicehost intake store (application_id {app_id:#x})")
    if version > LATEST:
        raise SchemaError(
            f"the database's schema is version {version}, newer than this servicehost knows ({LATEST}): "
            "upgrade servicehost")
    return int(version)


def migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the database to :data:`LATEST`; ``(version before, version now)``. ``conn`` must be in
    autocommit mode (``isolation_level=None``)."""
    before = version_of(conn)
    if before == LATEST:
        return before, before
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = version_of(conn)  # another process may have migrated it meanwhile
        for version in range(start + 1, LATEST + 1):
            for statement in _statements(_step(version).SQL):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return before, LATEST


def _statements(sql: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    out, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def migrate_url(parsed: StoreURL, **options: Any) -> tuple[int, int]:
    """``servicehost jobs NAME migrate`` on SQLite: the version the file held (0: none, or no file),
    then the store opened (which creates or migrates it, with its file mode and WAL) and closed."""
    from ..store import open_store

    before = 0
    if os.path.exists(parsed.path):
        try:
            conn = sqlite3.connect(f"file:{parsed.path}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"intake store {redact(parsed.url)}: cannot open it: {exc}") from None
        try:
            before = version_of(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"intake store {redact(parsed.url)}: cannot read it: {exc}") from None
        finally:
            conn.close()
    open_store(parsed.url, **options).close()
    return before, LATEST
