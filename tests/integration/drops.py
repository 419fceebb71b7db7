"""Helpers for the drop-folder tests: the ways people put files into a folder, and the check
that every file was recorded exactly once with the right bytes.

Writers here sleep between pieces to behave like slow writers; that is input, never a timing
assertion. Every wait on the service is a hang guard.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sqlite3
import time
from pathlib import Path

from .proc import EXAMPLES, HANG_GUARD, ServiceProcess

TARGET = str(EXAMPLES / "drop_folder.py")


def raw(name: str | bytes) -> bytes:
    """A file name as the bytes on disk (the example stores undecodable names as BLOBs)."""
    return name if isinstance(name, bytes) else os.fsencode(name)


def content(i: int, size: int) -> bytes:
    """Distinct, partly compressible content for file ``i``."""
    half = size // 2
    return i.to_bytes(8, "big") + os.urandom(max(0, half - 8)) + bytes(size - max(half, 8))


def drop_atomically(folder: Path, name: str | bytes, data: bytes) -> None:
    """Write under a hidden temporary name, then rename into place (what a careful writer does)."""
    name = raw(name)
    temp = os.path.join(os.fsencode(folder), b"." + name[:200] + b".tmp")
    with open(temp, "wb") as fh:
        fh.write(data)
    os.replace(temp, os.path.join(os.fsencode(folder), name))


def write_in_place(folder: Path, name: str | bytes, data: bytes, pieces: int, pause: float,
                   reopen: bool = False) -> None:
    """Write ``data`` into its final name in ``pieces``, sleeping ``pause`` between them (a slow
    writer, or ``cp`` over a slow link); with ``reopen`` it closes and reopens the file between
    pieces (a writer that appends in several sessions)."""
    path = os.path.join(os.fsencode(folder), raw(name))
    step = max(1, -(-len(data) // pieces))
    chunks = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
    fh = open(path, "wb")
    try:
        for n, chunk in enumerate(chunks):
            fh.write(chunk)
            fh.flush()
            if n < len(chunks) - 1:
                if reopen:
                    fh.close()
                    time.sleep(pause)
                    fh = open(path, "ab")
                else:
                    time.sleep(pause)
    finally:
        fh.close()


def rows(state: Path) -> list[tuple[bytes, str, bytes]]:
    """(raw name, sha256, output path) of every recorded file."""
    db = state / "files.sqlite3"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            got = conn.execute("SELECT name, sha256, output FROM files").fetchall()
        except sqlite3.OperationalError:  # table not created yet
            return []
    return [(raw(name), sha, raw(output)) for name, sha, output in got]


def wait_until(predicate, what: str, timeout: float = 3 * HANG_GUARD) -> None:
    """A hang guard: where the OS cannot tell whether a file is open for writing, files found at
    start are held up to max(30, 10 * settle) seconds, so this is well above that."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"hang guard: {what}")
        time.sleep(0.02)


def all_recorded(state: Path, made: dict[bytes, bytes]) -> bool:
    return {name for name, _, _ in rows(state)} >= set(made)


def check_exactly_once(state: Path, made: dict[bytes, bytes]) -> dict[str, int]:
    """Every dropped file recorded once, its sha256 that of the source and of the decompressed
    output; nothing left in the drop folder, in failed/, or half-written in out/. Returns counts."""
    got = rows(state)
    names = [name for name, _, _ in got]
    twice = len(names) - len(set(names))
    assert twice == 0, f"{twice} file(s) recorded twice"
    assert sorted(names) == sorted(made), (
        f"lost: {sorted(set(made) - set(names))[:5]}, unknown: {sorted(set(names) - set(made))[:5]}")
    for name, sha, output in got:
        assert sha == hashlib.sha256(made[name]).hexdigest(), f"{name!r}: recorded sha256 is not the source's"
        stored = gzip.decompress(Path(os.fsdecode(output)).read_bytes())
        assert hashlib.sha256(stored).hexdigest() == sha, f"{name!r}: stored output does not match its sha256"
    drop = state / "drop"
    assert not os.listdir(os.fsencode(drop)), f"left in the drop folder: {os.listdir(os.fsencode(drop))[:5]}"
    failed = state / "failed"
    assert not failed.exists() or not os.listdir(failed), f"wrongly in failed/: {os.listdir(failed)[:5]}"
    out = state / "out"
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part")), "a half-written output was left"
    outputs = {raw(str(p)) for p in out.glob("*.gz")}
    assert outputs == {output for _, _, output in got}, "an output in out/ belongs to no row"
    return {"files": len(made), "rows": len(got), "twice": twice}


def start(state: Path, *extra: str, settle: float = 0.3, wait_ready: bool = True,
          **env: str) -> ServiceProcess:
    svc = ServiceProcess("run", TARGET, "--state-dir", str(state), "--scan-interval", "0.05",
                         "--log-file", "none", *extra, SERVICEHOST_SETTLE=str(settle), **env)
    if wait_ready:
        svc.ready()
    return svc
