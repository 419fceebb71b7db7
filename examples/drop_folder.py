"""Example (b), the README's main job: a producer-consumer service doing real work.

It watches a drop folder. Every file dropped there is hashed (SHA-256) and gzip-compressed by a
pool of threads (stage ``digest``), then recorded in SQLite by one writer thread (stage
``record``), and only then removed from the drop folder. Nothing is lost or processed twice
across a stop, a crash or ``kill -9``:

* the drop folder itself is the durable queue: a file leaves it only after its row is committed;
* the compressed copy is written to a temporary name and renamed into place (never half-written);
* the row is keyed by (name, sha256), so a file re-seen after a crash between the commit and the
  removal is recognised and only removed, never recorded twice.

Writers should drop files atomically: write ``name.part`` (or ``.name``) and rename; such names
are ignored. A file that cannot be processed is moved to ``failed/``.

    servicehost run examples/drop_folder.py            # or: python examples/drop_folder.py run
    servicehost run examples/drop_folder.py --drop-dir /srv/incoming --workers 8
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import servicehost
from servicehost import Deadline, QueueClosed, Service, StopToken, setting
from servicehost.workers.pipeline import Pipeline, Stage

CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class DropSettings:
    drop_dir: Path = setting(Path(""), "folder to watch; empty: <state_dir>/drop")
    out_dir: Path = setting(Path(""), "where compressed copies go; empty: <state_dir>/out")
    database: Path = setting(Path(""), "SQLite file of processed files; empty: <state_dir>/files.sqlite3")
    workers: int = setting(4, "threads hashing and compressing", min=1, max=256)
    scan_interval: float = setting(0.5, "seconds between two scans of the drop folder", min=0.01, max=3600)
    compress_level: int = setting(6, "gzip compression level", min=1, max=9)


@dataclass(frozen=True)
class Digest:
    source: Path
    sha256: str
    size: int
    output: Path
    compressed_size: int


SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    compressed_size INTEGER NOT NULL,
    output TEXT NOT NULL,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (name, sha256)
)
"""


class DropFolder(Service):
    """Hash, compress and record every file dropped into a folder; exactly once."""

    name = "dropfolder"
    description = "servicehost example: hashes and compresses dropped files, records them in SQLite"
    Settings = DropSettings

    def start(self) -> None:
        s = self.settings
        base = self.state_dir
        self.drop = s.drop_dir if str(s.drop_dir) not in ("", ".") else base / "drop"
        self.out = s.out_dir if str(s.out_dir) not in ("", ".") else base / "out"
        self.failed = self.out.parent / "failed"
        db_path = s.database if str(s.database) not in ("", ".") else base / "files.sqlite3"
        for folder in (self.drop, self.out, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        # One connection, used only by the single ``record`` worker thread after start().
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(SCHEMA)
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()
        self.pipeline = self.use(Pipeline(
            name="files",
            stages=[
                Stage("digest", self.digest, workers=s.workers, queue_size=4 * s.workers),
                Stage("record", self.record, workers=1, queue_size=256),
            ],
        ))
        self.log.info("watching %s (results in %s)", self.drop, db_path)

    def run(self, stop: StopToken) -> None:
        self.scan()
        while not stop.wait(self.settings.scan_interval):
            self.scan()

    def scan(self) -> None:
        """Feed every new file to the pipeline; blocks while it is full (backpressure)."""
        with os.scandir(self.drop) as entries:
            names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith(".")
                           and not e.name.endswith(".part"))
        for name in names:
            with self.lock:
                if name in self.in_flight:
                    continue
                self.in_flight.add(name)
            try:
                self.pipeline.put(self.drop / name)
            except QueueClosed:  # stopping: the file stays in the drop folder for next time
                self.forget(name)
                return

    def digest(self, source: Path) -> Digest | None:
        """Stage 1 (many threads): hash and compress, streaming; write under a temporary name."""
        sha = hashlib.sha256()
        try:
            with open(source, "rb") as fh:
                head = fh.read(CHUNK)
                # The output name carries the content hash, so it is computed first.
                sha.update(head)
                while block := fh.read(CHUNK):
                    sha.update(block)
                digest = sha.hexdigest()
                output = self.out / f"{source.name}.{digest[:16]}.gz"
                temp = output.with_name(output.name + ".part")
                fh.seek(0)
                size = 0
                with gzip.open(temp, "wb", compresslevel=self.settings.compress_level) as gz:
                    while block := fh.read(CHUNK):
                        gz.write(block)
                        size += len(block)
            os.replace(temp, output)
        except FileNotFoundError:  # removed by someone else meanwhile: nothing to do
            self.forget(source.name)
            return None
        except Exception:
            self.give_up(source)
            raise
        return Digest(source, digest, size, output, output.stat().st_size)

    def record(self, d: Digest) -> None:
        """Stage 2 (one thread): commit the row, then remove the source. Idempotent."""
        try:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO files (name, sha256, size, compressed_size, output) VALUES (?, ?, ?, ?, ?)",
                (d.source.name, d.sha256, d.size, d.compressed_size, str(d.output)),
            )
            if cur.rowcount == 0:
                self.log.info("%s already recorded (seen again after a crash); removing it", d.source.name)
            d.source.unlink(missing_ok=True)
        except Exception:
            self.give_up(d.source)
            raise
        self.forget(d.source.name)

    def give_up(self, source: Path) -> None:
        try:
            os.replace(source, self.failed / source.name)
        except OSError as exc:
            self.log.warning("could not move %s to %s: %s", source, self.failed, exc)
        self.forget(source.name)

    def forget(self, name: str) -> None:
        with self.lock:
            self.in_flight.discard(name)

    def stop(self, deadline: Deadline) -> None:
        self.log.info("stopping: %d file(s) in flight; the rest stay in %s", len(self.in_flight), self.drop)


if __name__ == "__main__":
    servicehost.main(DropFolder)
