"""Example (b), the README's main job: a producer-consumer service doing real work.

It watches a drop folder. Every file put there is hashed (SHA-256) and gzip-compressed in one
read by a pool of threads (stage ``digest``), recorded in SQLite by one writer thread (stage
``record``), and only then removed from the drop folder. Results land in ``out/<sha256>.gz``
(files with the same content share one) and ``files.sqlite3`` (name, sha256, sizes, output).
Nothing is lost or recorded twice across a stop, a crash or ``kill -9``:

* the drop folder itself is the durable queue: a file leaves it only after its row is committed;
* output is written to a temporary name, fsynced and renamed into place (never half-written;
  temporary names a crash left behind are removed at start); its name comes from the content,
  so a file processed again after a crash overwrites the same output with the same bytes;
* the row is keyed by (name, sha256), so a file re-seen after a crash between the commit and
  the removal is recognised and only removed, never recorded twice.

**When a file is taken.** People put files in every way: an atomic rename, ``cp``, a slow
writer, a writer that closes and reopens. A file is taken only when complete:

* a file renamed into the folder (inotify ``IN_MOVED_TO``) is taken at once;
* any other file must stay unchanged (inode, size, mtime) for ``settle`` seconds, counted from
  its last change, or from its writer's close (``IN_CLOSE_WRITE``): the interval also covers
  writers that close and reopen;
* a file still open for writing is never taken, however long its writer pauses: on Linux,
  inotify shows a write not yet followed by a close, and for files the service owns (or as
  root) a read lease, which the kernel refuses while anyone has the file open for writing,
  says so even for writers that started before the service did. Where no lease can be taken,
  a recently written file that was already there when the service started (after a crash,
  say) is held until its writer's close is seen, or for ``max(30, 10 * settle)`` seconds (also
  how long a file created or written and never closed is held).

Elsewhere (or with ``--watch scan``, or on a file system without inotify or leases) only the
settle interval guards: pick one longer than your slowest writer's longest pause, or drop
files atomically. A file that changes while being read, or between being read and being
removed, is not removed; it is taken again once it settles. Names starting with ``.`` or
ending in ``.part`` are temporary names by convention and are left alone.

A file that cannot be read (no permission, an I/O error, a symbolic link, which is never
followed) is moved to ``failed/``. Trouble on the service's own side (a full disk, a locked
database) leaves the file where it is; it is tried again later. Names of any length and any
bytes are fine: the original name is stored as text when it is valid UTF-8, else as a BLOB of
its exact bytes.

    servicehost run examples/drop_folder.py            # or: python examples/drop_folder.py run
    servicehost run examples/drop_folder.py --drop-dir /srv/incoming --workers 8 --settle 5
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import itertools
import os
import select
import sqlite3
import stat
import struct
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import servicehost
from servicehost import ConfigError, Counters, Deadline, QueueClosed, QueueFull, Service, StopToken, setting
from servicehost.logs import DEBUG, ERROR, INFO, WARNING, LogEvent
from servicehost.workers.pipeline import Pipeline, Stage

CHUNK = 1 << 20
LINUX = sys.platform.startswith("linux")

# -- the example's own log events (ids 9xxx: examples; the framework's are in servicehost.logs) ----
watching = LogEvent(9001, "drop_watching", INFO,
                    "watching %s (%s, settle %.1fs): results in %s/<sha256>.gz and %s; "
                    "processed files leave the drop folder, unreadable ones go to %s")
file_processed = LogEvent(9002, "drop_file_processed", DEBUG, "processed %s: %d bytes, sha256 %s → %s (%d bytes)")
file_seen_again = LogEvent(9003, "drop_file_seen_again", INFO, "%s already recorded (seen again after a crash); removing it")
file_failed = LogEvent(9004, "drop_file_failed", WARNING, "%s moved to %s: %s")
file_again = LogEvent(9005, "drop_file_again", DEBUG, "%s %s; taken again once it settles")
file_retry = LogEvent(9006, "drop_file_retry", ERROR, "%s not processed (%s); it stays in the drop folder, tried again in %.0fs")
summary = LogEvent(9007, "drop_summary", INFO, "%s%d processed, %d failed, %d pending (%d in progress)")
inotify_unavailable = LogEvent(9008, "drop_inotify_unavailable", WARNING, "inotify unavailable (%s); scanning every %.2fs")
inotify_overflow = LogEvent(9009, "drop_inotify_overflow", WARNING, "inotify queue overflowed: rescanning %s")
stale_removed = LogEvent(9010, "drop_stale_removed", INFO, "removed %d unfinished output(s) left by a crash in %s")
move_failed = LogEvent(9011, "drop_move_failed", ERROR, "could not move %s to %s: %s")


class Watch(StrEnum):
    """How new files are noticed (setting ``watch``)."""

    AUTO = "auto"
    """inotify and the open-for-writing check where the OS offers them (Linux)"""
    SCAN = "scan"
    """the settle interval only"""


@dataclass(frozen=True, kw_only=True)
class DropSettings:
    drop_dir: Path = setting(Path(""), "folder to watch; empty: <state_dir>/drop")
    out_dir: Path = setting(Path(""), "where compressed copies go; empty: <state_dir>/out")
    database: Path = setting(Path(""), "SQLite file of processed files; empty: <state_dir>/files.sqlite3")
    workers: int = setting(4, "threads hashing and compressing", min=1, max=256)
    scan_interval: float = setting(0.5, "seconds between two scans of the drop folder (with inotify, a safety "
                                        "net: at least 5)", min=0.01, max=3600)
    settle: float = setting(2.0, "seconds a file written in place must stay unchanged before it is taken "
                                 "(renamed-in files are taken at once)", min=0.0, max=86400)
    watch: Watch = setting(Watch.AUTO, "auto: inotify and the open-for-writing check where the OS offers them "
                                       "(Linux); scan: the settle interval only")
    summary_interval: float = setting(5.0, "seconds between two progress summaries while files flow "
                                           "(0: only at stop)", min=0.0, max=86400)
    compress_level: int = setting(6, "gzip compression level", min=1, max=9)


SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    name TEXT NOT NULL,  -- the name as text when it is valid UTF-8, else a BLOB of its bytes
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    compressed_size INTEGER NOT NULL,
    output TEXT NOT NULL,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (name, sha256)
)
"""

Signature = tuple[int, int, int]  # inode, size, mtime (ns): what "unchanged" means


def signature(st: os.stat_result) -> Signature:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def stored(text: str) -> str | bytes:
    """A name or path as SQLite keeps it: text if its bytes are UTF-8, else the bytes."""
    raw = os.fsencode(text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def shown(text: object) -> str:
    """A name or path for a log line: undecodable bytes and control characters escaped, so a
    name can never break a log line or the log handler."""
    out = os.fsencode(str(text)).decode("utf-8", "backslashreplace")
    if out.isprintable():
        return out
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in out)


def ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(".part")


class Unreadable(Exception):
    """The source itself cannot be read: the file goes to failed/."""


# -- is someone writing this file? ------------------------------------------------------------------
if LINUX:
    import fcntl
    import signal as _signal

    _F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
    _F_SETSIG = getattr(fcntl, "F_SETSIG", 10)


def open_for_writing(fd: int) -> bool | None:
    """True if any process has the file open for writing, False if none has, None if the OS
    cannot tell. Linux: a read lease is refused (EAGAIN) while the file is open for writing; it
    is taken and given back at once. A writer opening the file in that instant waits for the
    release and makes the kernel signal us, with SIGURG (ignored) rather than SIGIO (fatal)."""
    if not LINUX:
        return None
    try:
        fcntl.fcntl(fd, _F_SETSIG, _signal.SIGURG)
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:  # EACCES: not our file and no CAP_LEASE; EINVAL/ENOLCK: no leases here
        return True if exc.errno == errno.EAGAIN else None
    fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
    return False


def probe(path: Path) -> bool | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        return open_for_writing(fd)
    finally:
        os.close(fd)


class Inotify:
    """inotify(7) on one folder through libc (ctypes), plus a self-pipe to wake ``wait``."""

    MODIFY, ATTRIB, CLOSE_WRITE = 0x2, 0x4, 0x8
    MOVED_FROM, MOVED_TO, CREATE, DELETE = 0x40, 0x80, 0x100, 0x200
    DELETE_SELF, MOVE_SELF, OVERFLOW, IGNORED = 0x400, 0x800, 0x4000, 0x8000
    _ONLYDIR, _EXCL_UNLINK = 0x01000000, 0x04000000
    _MASK = MODIFY | ATTRIB | CLOSE_WRITE | MOVED_FROM | MOVED_TO | CREATE | DELETE | DELETE_SELF | MOVE_SELF

    def __init__(self, folder: Path) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        if add_watch(fd, os.fsencode(folder), self._MASK | self._ONLYDIR | self._EXCL_UNLINK) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, os.strerror(err), str(folder))
        self.fd = fd
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._closed = False

    def wait(self, timeout: float) -> list[tuple[int, str]]:
        """Events (mask, name) that came within ``timeout`` seconds; [] when woken or idle."""
        ready, _, _ = select.select([self.fd, self._wake_r], [], [], max(0.0, timeout))
        if self.fd not in ready:
            return []
        events: list[tuple[int, str]] = []
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return events
            pos = 0
            while pos < len(buf):  # struct inotify_event: int wd; u32 mask, cookie, len; char name[len]
                _, mask, _, length = struct.unpack_from("iIII", buf, pos)
                name = buf[pos + 16:pos + 16 + length].rstrip(b"\0")
                events.append((mask, os.fsdecode(name)))
                pos += 16 + length

    def wake(self) -> None:
        with self._lock:  # never write to a closed (maybe reused) descriptor
            if not self._closed:
                try:
                    os.write(self._wake_w, b"x")
                except BlockingIOError:  # already woken
                    pass

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                for fd in (self.fd, self._wake_r, self._wake_w):
                    os.close(fd)


# -- what the watcher knows about each file in the drop folder ------------------------------------
@dataclass(eq=False)
class Entry:
    name: str
    since: float                  # monotonic time of the last change seen
    sig: Signature | None = None  # at the last look
    renamed: bool = False         # arrived by rename: complete at once
    writing: bool = False         # inotify: written to (or created) and not closed since
    cannot_tell: bool = False     # the OS could not say whether a writer has it open
    unseen: bool = False          # found by a scan while inotify ran: its history is unknown
    taken: bool = False           # in the pipeline
    not_before: float = 0.0       # tried again no earlier (after trouble on our side)
    tries: int = 0


@dataclass(frozen=True)
class Digest:
    name: str
    sha256: str
    size: int
    output: Path
    compressed_size: int
    sig: Signature  # the source as read


class Progress:
    """The folder's counters as a component: the host reports them with the pools', and the
    final summary is logged after the pipeline drained (components drain in reverse order)."""

    def __init__(self, service: DropFolder) -> None:
        self.service = service
        self.name = "drop-folder"
        self._reported = False

    def close(self) -> None:
        pass

    def drain(self, deadline: Deadline) -> None:  # the files themselves are durable: never unfinished
        if not self._reported:
            self._reported = True
            self.service.summarize("at stop: ")
        return None

    def counters(self) -> Counters:
        s = self.service
        processed, failed, pending, in_progress = s.tally()
        return Counters(self.name, submitted=s.taken_total, completed=processed, failed=failed,
                        in_flight=in_progress, queue_depth=pending - in_progress)

    def beats(self) -> Iterable[Any]:
        return ()

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


class DropFolder(Service[DropSettings]):
    """Hash, compress and record every file dropped into a folder; exactly once."""

    name = "dropfolder"
    description = "servicehost example: hashes and compresses dropped files, records them in SQLite"

    def start(self) -> None:
        s = self.settings
        base = self.state_dir
        self.drop = s.drop_dir if str(s.drop_dir) not in ("", ".") else base / "drop"
        self.out = s.out_dir if str(s.out_dir) not in ("", ".") else base / "out"
        self.failed = self.out.parent / "failed"
        db_path = s.database if str(s.database) not in ("", ".") else base / "files.sqlite3"
        for folder in (self.drop, self.out, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        if len({f.resolve() for f in (self.drop, self.out, self.failed)}) < 3:  # outputs would be inputs
            raise ConfigError("settings", "out_dir", f"a folder other than the drop folder and {shown(self.failed)}",
                              shown(self.out))
        self.remove_stale_outputs()
        # One connection, used only by the single ``record`` worker thread after start().
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(SCHEMA)

        self.lock = threading.Lock()
        self.entries: dict[str, Entry] = {}
        self.processed = self.failures = self.taken_total = 0
        self.hold = max(30.0, 10 * s.settle)  # see due()
        self._temp_ids = itertools.count()
        self.inotify: Inotify | None = None
        how = "scan only"
        if s.watch is Watch.AUTO and LINUX:
            try:
                self.inotify = Inotify(self.drop)  # before the first scan: no change falls between
                how = "inotify"
            except (OSError, AttributeError) as exc:
                inotify_unavailable(self.log, exc, s.scan_interval)
        self.progress = self.use(Progress(self))  # first used, so drained after the pipeline
        self.pipeline = self.use(Pipeline(
            name="files",
            stages=[
                Stage("digest", self.digest, workers=s.workers, queue_size=2 * s.workers),
                Stage("record", self.record, workers=1, queue_size=256),
            ],
            on_unfinished=self.handed_back,
        ))
        watching(self.log, shown(self.drop), how, s.settle, shown(self.out), shown(db_path), shown(self.failed))

    def remove_stale_outputs(self) -> None:
        stale = [p for p in self.out.iterdir() if p.name.endswith(".part")]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            stale_removed(self.log, len(stale), shown(self.out))

    # -- the watcher (the run thread): which files are complete ------------------------------------
    def run(self, stop: StopToken) -> None:
        s = self.settings
        rescan = s.scan_interval
        if self.inotify is not None:
            stop.on_stop(self.inotify.wake)
            rescan = max(rescan, 5.0)  # events say what changed; a scan only catches what they cannot
        next_scan = next_summary = time.monotonic()
        last_summary = self.tally()
        try:
            while not stop.stop_requested:
                now = time.monotonic()
                if now >= next_scan:
                    self.scan(now)
                    next_scan = now + rescan
                soonest = self.feed(now, until=now + s.scan_interval)
                if s.summary_interval and now >= next_summary:
                    if self.tally() != last_summary:
                        last_summary = self.tally()
                        self.summarize("")
                    next_summary = now + s.summary_interval
                wake = min(next_scan, next_summary if s.summary_interval else next_scan,
                           soonest if soonest is not None else next_scan)
                timeout = max(0.0, wake - time.monotonic())
                if self.inotify is None:
                    stop.wait(timeout)
                elif self.on_events(self.inotify.wait(timeout)):
                    next_scan = 0.0  # events were lost: look at everything again
        finally:
            if self.inotify is not None:
                self.inotify.close()

    def scan(self, now: float) -> None:
        """Find names that no event announced (files there before the start, missed events)."""
        with os.scandir(self.drop) as it:
            found = {e.name: e for e in it if not ignored(e.name)}
        with self.lock:
            for name in [n for n, e in self.entries.items() if n not in found and not e.taken]:
                del self.entries[name]
            for name in sorted(found.keys() - self.entries.keys()):
                try:
                    st = found[name].stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    self.entries[name] = Entry(name, now, signature(st), unseen=self.inotify is not None)

    def on_events(self, events: list[tuple[int, str]]) -> bool:
        """Apply inotify events to the entries; True if the kernel's queue overflowed."""
        now = time.monotonic()
        I = Inotify
        overflowed = False
        with self.lock:
            for mask, name in events:
                if mask & I.OVERFLOW:
                    inotify_overflow(self.log, shown(self.drop))
                    for seen in self.entries.values():  # what was missed is unknown: look again
                        seen.since, seen.writing, seen.renamed, seen.unseen = now, False, False, True
                    overflowed = True
                    continue
                if mask & (I.IGNORED | I.DELETE_SELF | I.MOVE_SELF):
                    raise RuntimeError(f"the drop folder {shown(self.drop)} was removed or moved")
                if not name or ignored(name):
                    continue
                if mask & (I.DELETE | I.MOVED_FROM):
                    e = self.entries.get(name)
                    if e is not None and not e.taken:
                        del self.entries[name]
                    continue
                e = self.entries.get(name)
                if e is None or mask & (I.CREATE | I.MOVED_TO | I.CLOSE_WRITE):
                    try:
                        st = os.lstat(self.drop / name)
                    except OSError:
                        continue
                    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                        continue
                    if e is None:
                        e = self.entries[name] = Entry(name, now)
                    e.sig = signature(st)
                    if mask & I.CREATE:  # created by open(O_CREAT): a writer has it (not a hard link)
                        e.writing = stat.S_ISREG(st.st_mode) and st.st_nlink == 1
                e.since, e.unseen = now, False
                if mask & I.MOVED_TO:
                    e.renamed, e.writing = True, False
                elif mask & I.CLOSE_WRITE:
                    e.renamed, e.writing = False, False
                elif mask & I.MODIFY:
                    e.renamed, e.writing = False, True
                elif mask & I.ATTRIB:
                    e.renamed = False
        return overflowed

    def feed(self, now: float, until: float) -> float | None:
        """Give every complete file to the pipeline; return when the next one may be complete.
        Blocks while the pipeline is full (backpressure: the files wait in the drop folder),
        but not past ``until``, so that events, scans and summaries go on meanwhile."""
        with self.lock:
            waiting = [e for e in self.entries.values() if not e.taken]
        soonest: float | None = None
        for e in waiting:
            due = self.due(e)
            if due <= now and self.complete(e, now):
                with self.lock:
                    if e.taken or self.entries.get(e.name) is not e:
                        continue
                    e.taken = True
                try:
                    self.pipeline.put(e.name, timeout=max(0.0, until - time.monotonic()))
                except (QueueClosed, QueueFull):  # stopping, or full: it stays in the drop folder
                    with self.lock:
                        e.taken = False
                    return now
                with self.lock:
                    self.taken_total += 1
                continue
            if not e.taken and self.entries.get(e.name) is e:
                due = self.due(e)
                soonest = due if soonest is None else min(soonest, due)
        return soonest

    def due(self, e: Entry) -> float:
        """When the file may be complete: at once if renamed in; else ``settle`` after its last
        change; a file created or written and never closed, where the OS cannot tell whether
        its writer still has it open, is held longer (a writer may pause)."""
        if e.renamed:
            return e.not_before
        wait = self.hold if e.writing and e.cannot_tell else self.settings.settle
        return max(e.since + wait, e.not_before)

    def complete(self, e: Entry, now: float) -> bool:
        """Look at the file now: unchanged since the last look and nobody writing it?"""
        path = self.drop / e.name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            with self.lock:
                if self.entries.get(e.name) is e:
                    del self.entries[e.name]
            return False
        except OSError:
            e.since = now
            return False
        if stat.S_ISLNK(st.st_mode):
            self.give_up(e.name, "a symbolic link (never followed)")
            return False
        if not stat.S_ISREG(st.st_mode):
            with self.lock:
                self.entries.pop(e.name, None)
            return False
        sig = signature(st)
        if sig != e.sig:
            e.sig, e.since, e.renamed = sig, now, False  # changed: the interval starts again
            return False
        writing = probe(path) if self.settings.watch is Watch.AUTO else None
        if writing:
            e.since, e.writing, e.cannot_tell = now, True, False
            return False
        if writing is False:
            e.writing, e.cannot_tell = False, False
            return True
        if e.unseen and time.time() - st.st_mtime < self.hold:
            # There before the watch began (a restart), written recently, and no way to check:
            # its writer may only be pausing; hold it until an event tells more, or for long.
            e.writing, e.unseen = True, False
        if e.writing and now - e.since < self.hold:  # created or written, not closed, and no way to check
            e.cannot_tell = True
            return False
        return True

    # -- stage 1 (many threads): hash and compress in one read ------------------------------------
    def digest(self, name: str) -> Digest | None:
        source = self.drop / name
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(source, flags)
        except FileNotFoundError:  # removed by someone else meanwhile: nothing to do
            self.finished(name)
            return None
        except OSError as exc:
            self.give_up(name, "a symbolic link (never followed)" if exc.errno == errno.ELOOP else why(exc))
            return None
        temp = self.out / f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}.{os.getpid()}.{next(self._temp_ids)}.part"
        try:
            with open(fd, "rb", buffering=0) as src:
                before = os.fstat(fd)
                if not stat.S_ISREG(before.st_mode):
                    self.finished(name)
                    return None
                if self.settings.watch == "auto" and open_for_writing(fd):
                    self.again(name, "is still open for writing", writing=True)
                    return None
                sha256, size = self.compress(src, temp)
                after = os.fstat(fd)
            if size != after.st_size or signature(after) != signature(before):
                temp.unlink()
                self.again(name, "changed while being read")
                return None
            output = self.out / f"{sha256}.gz"
            os.replace(temp, output)
            sync_folder(self.out)
            return Digest(name, sha256, size, output, output.stat().st_size, signature(before))
        except Unreadable as exc:
            temp.unlink(missing_ok=True)
            self.give_up(name, str(exc))
            return None
        except BaseException as exc:
            temp.unlink(missing_ok=True)
            self.retry_later(name, exc)
            raise

    def compress(self, src: Any, temp: Path) -> tuple[str, int]:
        """Each block read feeds both the hash and the gzip stream: the recorded hash is always
        the hash of the stored bytes. The output is deterministic (no name, no time in it)."""
        sha = hashlib.sha256()
        size = 0
        with open(temp, "xb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=self.settings.compress_level,
                               mtime=0) as gz:
                while True:
                    try:
                        block = src.read(CHUNK)
                    except OSError as exc:
                        raise Unreadable(why(exc)) from exc
                    if not block:
                        break
                    sha.update(block)
                    gz.write(block)
                    size += len(block)
            raw.flush()
            os.fsync(raw.fileno())
        return sha.hexdigest(), size

    # -- stage 2 (one thread): commit the row, then remove the source; idempotent -----------------
    def record(self, d: Digest) -> None:
        source = self.drop / d.name
        try:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO files (name, sha256, size, compressed_size, output) VALUES (?, ?, ?, ?, ?)",
                (stored(d.name), d.sha256, d.size, d.compressed_size, stored(str(d.output))),
            )
            try:
                now = signature(os.lstat(source))
            except FileNotFoundError:
                now = None
            if now is not None and now != d.sig:  # rewritten since it was read: keep the new content
                self.again(d.name, "changed after it was read (that version is recorded)")
                return
            if now is not None:
                source.unlink(missing_ok=True)
        except BaseException as exc:
            self.retry_later(d.name, exc)
            raise
        if cur.rowcount == 0:
            file_seen_again(self.log, shown(d.name))
        file_processed(self.log, shown(d.name), d.size, d.sha256, shown(d.output), d.compressed_size)
        self.finished(d.name, processed=True)

    # -- what happens to an entry -------------------------------------------------------------------
    def finished(self, name: str, processed: bool = False) -> None:
        with self.lock:
            self.entries.pop(name, None)
            self.processed += processed

    def again(self, name: str, reason: str, writing: bool = False) -> None:
        """Not complete after all: back to waiting for it to settle."""
        file_again(self.log, shown(name), reason)
        try:
            sig: Signature | None = signature(os.lstat(self.drop / name))
        except OSError:
            sig = None
        with self.lock:
            e = self.entries.get(name)
            if e is not None:
                e.taken, e.renamed, e.since, e.sig = False, False, time.monotonic(), sig
                e.writing = e.writing or writing

    def retry_later(self, name: str, exc: BaseException) -> None:
        """Trouble on our side (disk full, database locked, a bug): the file stays; back off."""
        with self.lock:
            e = self.entries.get(name)
            if e is None:
                return
            e.tries += 1
            delay = min(300.0, max(1.0, self.settings.settle) * 2 ** min(e.tries, 8))
            e.taken, e.not_before = False, time.monotonic() + delay
        file_retry(self.log, shown(name), why(exc), delay)

    def give_up(self, name: str, reason: str) -> None:
        """The file itself cannot be processed: move it to failed/ (never over another one)."""
        target = self.failed / name
        n = 0
        while os.path.lexists(target):
            n += 1
            target = self.failed / f"{name[:200]}~{n}"
        try:
            os.replace(self.drop / name, target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            move_failed(self.log, shown(name), shown(self.failed), why(exc))
            self.retry_later(name, exc)
            return
        else:
            file_failed(self.log, shown(name), shown(target.parent), reason)
        with self.lock:
            self.entries.pop(name, None)
            self.failures += 1

    def handed_back(self, items: list[tuple[str, Any]]) -> None:
        """At a stop deadline: files not finished stay in the drop folder for the next start."""
        with self.lock:
            for _, item in items:
                e = self.entries.get(item.name if isinstance(item, Digest) else item)
                if e is not None:
                    e.taken = False

    # -- feedback -----------------------------------------------------------------------------------
    def tally(self) -> tuple[int, int, int, int]:
        with self.lock:
            in_progress = sum(e.taken for e in self.entries.values())
            return self.processed, self.failures, len(self.entries), in_progress

    def summarize(self, when: str) -> None:
        summary(self.log, when, *self.tally())


def why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} [errno {exc.errno}]"
    return f"{type(exc).__name__}: {exc}"


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows has no directory handles for this)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":
    servicehost.main(DropFolder)
