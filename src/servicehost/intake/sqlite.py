"""The embedded intake store: one SQLite file, one store thread per process, group commit.

Every write a process makes goes through its store thread. Callers append operations to the
current *batch* and (for a submit, a claim, a release) wait for it; the store thread takes the
whole batch and runs it as **one transaction** — ``BEGIN IMMEDIATE``; the acks (a fenced
``DELETE`` per claim they came from); the submits (a few multi-row INSERTs); releases; the start
marks (an UPDATE per claim); fails; lease renewals; requeues; the reaping of lapsed leases when
due; the claims — then ``COMMIT`` (WAL,
``synchronous=FULL``: durable when it returns), and only then answers the callers. While it
commits, the next batch fills, so the busier the store, the more each fsync carries.

Checkpoints are the store's too (SQLite's automatic ones are off): a passive one every
``checkpoint_interval`` seconds, from a thread and connection of their own (so no tick waits for
the bulk of the copy). The log starts again from its beginning only when a write transaction
begins on a fully copied log, which a store that commits all the time never gives the other
thread: so after each of that thread's copies, the store thread copies the few frames committed
meanwhile, between two ticks (a sync of the database file, about a millisecond), and its
next transaction rewinds the log. A truncating checkpoint by the store thread when the WAL passes
``checkpoint_bytes`` (which is also its ``journal_size_limit``) is the backstop: it holds every
caller for as long as it copies (about 100 ms at 64 MiB), and used to come every few seconds
under load, when the log never rewound.

Several processes may share one file (each with its store thread): ``BEGIN IMMEDIATE`` serializes
their transactions and a busy timeout (``busy_timeout``, never more than the calls' own
``timeout``) waits out the others. A waiting
claim polls for their submits every ``poll`` seconds with one indexed read (local submits wake it
at once). Correct, not fast: many machines is what the PostgreSQL store is for.

When a write fails because of the disk (full, read-only, gone), the transaction is rolled back,
the waiting submits, claims, releases and requeues get :class:`StoreUnavailable` (or
:class:`StoreFull`) — nothing of them was written — and acks, fails and renewals are kept for the
next try, so work continues, without loss, once the cause is gone.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .. import logs
from ..stopping import Deadline
from .schema import LATEST, migrate, version_of
from .store import (
    DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT, ERROR_HISTORY, DeadJob, ErrorRecord, InvalidArgument, Job, JobInfo,
    LeaseLost, NoStoreYet, PayloadError, SchemaError, Stats, StoreClosed, StoreError, StoreFull, StoreMetrics, StoreTimeout,
    UNREADABLE_PAYLOAD, StoreUnavailable, StoreURL, Submission, UnknownJob, backoff, one_line, redact,
)
from .store import checked_count, checked_id, checked_node, checked_options, checked_pairs, checked_seconds
from .store import checked_size, checked_store_options
from .store import to_json as _to_json

log = logs.log.getChild("intake")
T = TypeVar("T")

_UNSET: Any = object()
_READY, _RUNNING = 0, 1

# Operation kinds, in the order a tick applies them.
_SUBMIT, _RELEASE, _ACK, _START, _FAIL, _RENEW, _REQUEUE, _READ, _CLAIM, _FLUSH = range(10)
_KINDS = 10
# Kinds a failed write answers with the error (nothing was written); the others are retried.
_ANSWERED_ON_ERROR = frozenset({_SUBMIT, _RELEASE, _REQUEUE, _READ, _CLAIM})

# A claim in two statements of one step each (rows returned one by one would each cost a step,
# and the GIL with it): take the jobs, marking them with this claim's token and lease; read them
# back by that mark (the lease index finds them) as one JSON document.
_TAKE_SQL = """
UPDATE jobs SET state = 1, attempts = attempts + 1, started = ?6, owner = ?1, token = ?2, lease_until = ?3
WHERE id IN (
    SELECT id FROM jobs AS j
    WHERE state = 0 AND run_at <= ?4
      AND (key IS NULL OR NOT EXISTS (
            SELECT 1 FROM jobs AS k
            WHERE k.key = j.key AND k.id <> j.id AND (k.state = 1 OR k.id < j.id)))
    ORDER BY priority DESC, run_at, id LIMIT ?5)
"""
_CLAIMED_SQL = """
SELECT json_group_array(json_array(
    id, attempts, key, priority, max_attempts, submitted_at, idem_key, run_at,
    typeof(payload) = 'blob', CASE WHEN typeof(payload) = 'blob' THEN hex(payload) ELSE json(payload) END))
FROM jobs WHERE state = 1 AND lease_until = ?1 AND token = ?2
"""
# A claim that marks only its first jobs started: the rest of its order (the claimer's, too) is not.
_START_FIRST_SQL = """
UPDATE jobs SET started = 1 WHERE id IN (
    SELECT id FROM jobs WHERE state = 1 AND lease_until = ?1 AND token = ?2 ORDER BY priority DESC, run_at, id LIMIT ?3)
"""
# Acks and start marks go by claim (one token each): a statement per token, its ids a JSON array
# (``id IN`` a list, then one compare: three times cheaper than an (id, token) pair each).
_FENCED_SQL = """
SELECT e.value FROM json_each(?1) AS e
WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = e.value AND token = ?2 AND state = 1)
"""
_ACK_SQL = "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1)) AND token = ?2 AND state = 1"
_START_SQL = "UPDATE jobs SET started = 1 WHERE id IN (SELECT value FROM json_each(?1)) AND token = ?2 AND state = 1"


def _by_token(pairs: Iterable[tuple[int, int]]) -> list[tuple[str, int]]:
    """``(job id, token)`` pairs as (JSON array of ids, token), one per token."""
    groups: dict[int, list[int]] = {}
    for job_id, token in pairs:
        ids = groups.get(token)
        if ids is None:
            groups[token] = [job_id]
        else:
            ids.append(job_id)
    return [(json.dumps(ids), token) for token, ids in groups.items()]


_INSERT_SQL = """
INSERT INTO jobs (state, priority, run_at, key, attempts, max_attempts, submitted_at, idem_key, payload)
VALUES (0, ?, ?, ?, 0, ?, ?, ?, ?)
"""
# A ``submit_many`` of JSON payloads sharing the call's options: one statement, its payloads one
# bound JSON array (each row's values bound one by one would hold the GIL for the binding: seven
# values a row): of the payloads themselves when all are objects or arrays (json_each gives each
# one's text), else of their JSON texts (json_each gives each text back exactly). In order.
_INSERT_DOC_SQL = """
INSERT INTO jobs (state, priority, run_at, key, attempts, max_attempts, submitted_at, idem_key, payload)
SELECT 0, ?1, ?2, ?3, 0, ?4, ?5, NULL, e.value FROM json_each(?6) AS e ORDER BY e.key
"""
#: Seconds a tick of only acks, fails and start marks waits for a call that blocks to join it: the
#: intake's claimer queues its next claim just after reading the last one's answer, and without
#: the wait every other commit would carry acks alone.
GATHER = 0.001
#: Seconds a tick waits, at most, for the blocking callers the last tick answered to call again
#: (see ``_loop``): busy producers and the claimer then share each commit instead of alternating.
REJOIN = 0.001
#: A tick holding this many submit calls (each a caller waiting) commits them first, alone, and
#: answers them before it commits the rest (acks, claims...): an fsync more, for callers that
#: then return while the rest is committed instead of after.
SPLIT_SUBMITS = 8
#: Seconds between two looks at the WAL's size (for the truncating checkpoint): a stat is a system
#: call, and the store thread waits for the GIL after each one while the process is busy. It looks
#: sooner once the payloads submitted since the last look reach ``checkpoint_bytes // SIZE_SHARE``:
#: a job's row is written about three times (submit, claim, ack), so a fast machine's ticks cannot
#: grow the log far past the limit between two looks however many of them fit in SIZE_EVERY.
SIZE_EVERY = 0.01
SIZE_SHARE = 8
_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)  # rows per multi-row INSERT: each shape prepared once, then cached


def _insert_rows(conn: sqlite3.Connection, flat: list[Any]) -> int:
    """Insert rows (``flat``: their values one after another) in order with few statements; the
    last row's id. Each statement is one ``sqlite3_step``, and the sqlite3 module lets go of the
    GIL around every step: row by row (``executemany``), a busy process makes the store thread wait
    for the GIL once per row."""
    at, end, last = 0, len(flat), 0
    for size in _CHUNKS:
        sql, width = _MULTI_INSERT[size], size * _ROW
        while end - at >= width:
            last = conn.execute(sql, flat[at:at + width]).lastrowid or 0
            at += width
    return last


_ROW = 7  # values per row: priority, run_at, key, max_attempts, submitted_at, idem_key, payload
_MULTI_INSERT = {
    size: "INSERT INTO jobs (state, priority, run_at, key, attempts, max_attempts, submitted_at, idem_key, payload) "
          "VALUES " + ", ".join(["(0, ?, ?, ?, 0, ?, ?, ?, ?)"] * size)
    for size in _CHUNKS
}


class _Batch:
    """The operations one tick commits, by kind (sorted as they come: the store thread never loops
    over them to sort). :meth:`wake` tells their callers once they have their answers."""

    __slots__ = ("kinds", "size", "done", "waiters")

    def __init__(self) -> None:
        self.kinds: list[list[_Op]] = [[] for _ in range(_KINDS)]
        self.size = 0
        self.done = threading.Event()  # for the futures (acks, fails), rarely waited on
        self.waiters: list[_Op] = []  # blocking calls: each waits on a lock of its own

    def wake(self, final: bool = True) -> None:
        """(The store thread.) Wake every caller whose operation has its answer. A blocking call
        waits on its own lock, not on one event: a tick that answers a hundred callers would
        otherwise have them all queue for the event's lock (and the GIL) at once. An operation that
        moved on unanswered (a claim left waiting for work) is woken by its new batch."""
        if final:  # every operation of it has its answer (not after the first commit of a split tick)
            self.done.set()
        keep = []
        for op in self.waiters:
            if op.done():
                assert op.waiter is not None
                op.waiter.release()
            elif op.batch is self:
                keep.append(op)
            elif op.batch is not None:
                op.batch.waiters.append(op)
        self.waiters = keep


class _Op:
    """One call's operation, and its answer once its batch is committed. It is the future an
    ``ack``/``fail`` returns (``result(timeout)``, ``done()``)."""

    __slots__ = ("kind", "args", "value", "error", "batch", "until", "waiter")

    def __init__(self, kind: int, args: Any, until: float | None = None, blocking: bool = False) -> None:
        self.kind = kind
        self.args = args
        self.value: Any = _UNSET
        self.error: BaseException | None = None
        self.batch: _Batch | None = None
        self.until = until  # a waiting claim: monotonic time it gives up
        self.waiter: Any = None  # a blocking call's lock, held until the answer is in
        if blocking:
            self.waiter = threading.Lock()
            self.waiter.acquire()

    def done(self) -> bool:
        return self.value is not _UNSET or self.error is not None

    def result(self, timeout: float | None = None) -> Any:
        """The answer, once committed; raises what the store raised, StoreTimeout past ``timeout``."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.error is not None:
                raise self.error
            if self.value is not _UNSET:
                return self.value
            batch = self.batch  # re-read: a waiting claim or a carried ack moves to a batch of its own
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise StoreTimeout(f"the intake store did not commit within {timeout:.3g}s; it may still do so")
            if self.waiter is not None:
                self.waiter.acquire(timeout=-1 if left is None else left)
            else:
                assert batch is not None
                batch.done.wait(left)


def _encode(payload: Any) -> str | bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    return _json_text(payload)


def _json_text(payload: Any) -> str:
    try:
        return _to_json(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"a payload must be a JSON value or bytes: {exc}") from None


#: ``Job``'s fields as one tuple, without the named tuple's Python-level ``__new__`` (a call per job).
_new = tuple.__new__


def _texts(items: list[Any]) -> list[str] | None:
    """Each item's JSON text, or None when one is a :class:`Submission` or bytes (those go row by row)."""
    texts = []
    for item in items:
        if type(item) is Submission or isinstance(item, (bytes, bytearray, memoryview)):
            return None
        texts.append(_json_text(item))
    return texts


def _document(items: list[Any]) -> str | None:
    """The JSON array ``_INSERT_DOC_SQL`` takes, its elements the payloads' texts (json_each
    gives an object's or array's text as it is, a string's unquoted): objects and arrays go in
    as themselves, one encoding for all; any other payload as its own text, a JSON string. None
    when an item goes row by row (:func:`_texts`)."""
    for item in items:
        kind = type(item)
        if kind is not dict and kind is not list:
            texts = _texts(items)
            return None if texts is None else _to_json(texts)
    try:
        return _to_json(items)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"a payload must be a JSON value or bytes: {exc}") from None


def _decode(payload: str | bytes) -> Any:
    return payload if isinstance(payload, bytes) else json.loads(payload)


def _shown_payload(payload: str | bytes) -> Any:
    """A payload as ``jobs``/``dead`` list it: decoded, or, when its stored text is not valid JSON
    (see :meth:`SQLiteStore._bury_unreadable`), that text as it is."""
    try:
        return _decode(payload)
    except ValueError:
        return payload


def _storage_error(exc: sqlite3.Error, url: str) -> StoreError:
    """A SQLite error as the store error callers see (the URL redacted)."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if code == sqlite3.SQLITE_FULL or "full" in text:
        return StoreFull(f"intake store {url}: the disk is full ({text}); nothing was written, retry when space is back")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return StoreTimeout(f"intake store {url}: another process held the database too long ({text})")
    return StoreUnavailable(f"intake store {url}: cannot write ({text}); nothing was written")


class SQLiteStore:
    """A :class:`~servicehost.intake.store.Store` on one SQLite file (``open_store("sqlite:////path")``).

    Options (URL query or keyword): ``synchronous`` (FULL; NORMAL trades the last commits on a
    power loss for speed), ``timeout`` (default seconds a blocking call waits: 30),
    ``busy_timeout`` (at most this long waiting for another process's transaction: 5),
    ``max_attempts`` (default per job: 10), ``checkpoint_bytes`` (WAL size limit: 64 MiB),
    ``checkpoint_interval`` (1 s), ``poll`` (a waiting claim's look at other processes' work:
    0.05 s), ``idempotency_retention`` (seconds a done job's key still dedupes: 7 days),
    ``file_mode`` (0600; its folder is made 0700 when missing), ``max_payload_bytes`` (a payload's
    UTF-8 or bytes at most: by default what SQLite binds, 1e9 unless built otherwise).
    ``create=False`` (a keyword only): a missing file is :class:`NoStoreYet`, and nothing is made.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, url: str | None = None, synchronous: str = "FULL",
        timeout: float = DEFAULT_TIMEOUT, busy_timeout: float = 5.0, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        checkpoint_bytes: int = 64 << 20, checkpoint_interval: float = 1.0, poll: float = 0.05,
        idempotency_retention: float = 7 * 86400.0, file_mode: int = 0o600,
        max_payload_bytes: int | None = None, clock: Callable[[], float] = time.time, create: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.url = redact(url or f"sqlite:///{self.path}")
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise InvalidArgument(f"intake store {self.url}: synchronous must be one of {', '.join(_SYNC_MODES)}, not {synchronous!r}")
        checked_store_options(
            self.url, {"timeout": timeout, "busy_timeout": busy_timeout, "checkpoint_interval": checkpoint_interval,
                       "poll": poll, "idempotency_retention": idempotency_retention},
            {"max_attempts": (max_attempts, 1, (1 << 31) - 1), "checkpoint_bytes": (checkpoint_bytes, 1, 1 << 62),
             "file_mode": (file_mode, 0, 0o777), "max_payload_bytes": (1 if max_payload_bytes is None else max_payload_bytes, 1, 1 << 62)},
            positive=("timeout", "checkpoint_interval", "poll"))
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._busy_timeout = min(busy_timeout, timeout)
        self._checkpoint_bytes = checkpoint_bytes
        self._checkpoint_interval = checkpoint_interval
        self._poll = poll
        self._retention = idempotency_retention
        self._clock = clock
        self._conn = self._connect(sync, file_mode, create)
        self._most = self._conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)  # what SQLite binds at most (1e9 by default)
        self.max_payload_bytes = self._most if max_payload_bytes is None else min(max_payload_bytes, self._most)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._next = _Batch()
        self._sleeping = False
        self._gathering = False  # the store thread waits a moment for a blocking call (GATHER)
        self._closing = False
        self._closed = False
        self._carried: list[_Op] = []      # acks/fails/renewals kept after a failed write
        self._waiting: list[_Op] = []      # claims waiting for work
        self._inflight: list[list[_Op]] = []  # the tick being run, by kind
        self._random = random.SystemRandom()  # claim tokens: unguessable, never repeated in practice
        self._failing: str | None = None   # why the last write failed, until one succeeds
        # metrics (store thread only; read unlocked: ints)
        self._m = dict(commits=0, committed_ops=0, last_batch=0, submitted=0, acked=0, failed=0,
                       dead_lettered=0, rescued=0, fenced=0)
        self._commit_seconds = 0.0
        self._sync = sync
        self._threads = threading.local()  # complete()'s connection, per calling thread
        self._own: list[sqlite3.Connection] = []  # every such connection, closed by close()
        self._stop_checkpoints = threading.Event()
        self._copied = False  # the checkpoint thread copied all the log it saw: the store thread finishes it
        self._unsized = 0  # payload bytes submitted since the store thread last looked at the WAL's size
        self._checkpointer = threading.Thread(target=self._checkpoints, daemon=True,
                                              name=f"intake-checkpoints:{os.path.basename(self.path)}")
        self._checkpointer.start()
        self._thread = threading.Thread(target=self._run, name=f"intake-store:{os.path.basename(self.path)}",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def from_url(cls, parsed: StoreURL, **options: Any) -> SQLiteStore:
        conv: Mapping[str, Callable[[str], Any]] = {
            "synchronous": str, "timeout": float, "busy_timeout": float, "max_attempts": int,
            "checkpoint_bytes": int, "checkpoint_interval": float, "poll": float,
            "idempotency_retention": float, "file_mode": lambda v: int(v, 8), "max_payload_bytes": int,
        }
        kwargs: dict[str, Any] = {}
        for name, text in parsed.options.items():
            if name not in conv:
                raise InvalidArgument(f"intake store {redact(parsed.url)}: unknown option {name!r} (known: {', '.join(conv)})")
            try:
                kwargs[name] = conv[name](text)
            except ValueError:
                raise InvalidArgument(f"intake store {redact(parsed.url)}: option {name}={text!r} is not valid") from None
        kwargs.update(options)
        return cls(parsed.path, url=parsed.url, **kwargs)

    # -- opening -----------------------------------------------------------------------------------
    def _connect(self, sync: str, file_mode: int, create: bool = True) -> sqlite3.Connection:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not create and not os.path.lexists(self.path):  # a look makes nothing (servicehost jobs stats)
            raise NoStoreYet(f"intake store {self.url}: no such file: nothing was stored there yet")
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder, mode=0o700, exist_ok=True)
            if not os.path.exists(self.path):
                # SQLite gives its -wal and -shm files the database file's mode.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), file_mode))
            elif not stat.S_ISREG(os.stat(self.path).st_mode):
                raise StoreUnavailable(f"intake store {self.url}: not a regular file")
        except OSError as exc:
            raise StoreUnavailable(f"intake store {self.url}: cannot create it: {exc.strerror or exc}") from None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_timeout, cached_statements=64)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"intake store {self.url}: cannot open it: {exc}") from None
        # Another process opening the same new file at once can make SQLite answer "locked" without
        # waiting (switching to WAL, recovering its index): try again, until the busy timeout.
        deadline = Deadline.after(self._busy_timeout)
        pause = threading.Event()  # never set: a deadline-bounded wait between tries
        while True:
            try:
                # What the file is, read before anything is changed in it: a database of another
                # program, or a newer store, is refused as it was found (not switched to WAL first).
                version_of(conn)
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreUnavailable(
                        f"intake store {self.url}: cannot use a write-ahead log here (journal mode {mode})")
                conn.execute(f"PRAGMA synchronous = {sync}")
                conn.execute("PRAGMA wal_autocheckpoint = 0")      # the store thread checkpoints
                conn.execute(f"PRAGMA journal_size_limit = {int(self._checkpoint_bytes)}")
                conn.execute("PRAGMA foreign_keys = OFF")
                before, now = migrate(conn)
                break
            except SchemaError as exc:
                conn.close()
                raise SchemaError(f"intake store {self.url}: {exc}; nothing in it was changed (is this the "
                                  "store's path?)") from None
            except StoreError:
                conn.close()
                raise
            except sqlite3.Error as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and not deadline.expired:
                    pause.wait(deadline.remaining(0.01))
                    continue
                conn.close()
                if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                    raise StoreUnavailable(f"intake store {self.url}: cannot open it: {exc}: the file is not a "
                                           "SQLite database, or is damaged (is this the store's path?)") from None
                raise _storage_error(exc, self.url) from None
        if before != now:
            logs.intake_store_migrated(log, self.url, before, now)
        logs.intake_store_opened(log, self.url, now, sync)
        return conn

    # -- the calls ---------------------------------------------------------------------------------
    def _add(self, op: _Op) -> _Op:
        with self._lock:
            if self._closing:
                raise StoreClosed(f"intake store {self.url} is closed")
            batch = self._next
            op.batch = batch
            batch.kinds[op.kind].append(op)
            batch.size += 1
            if op.waiter is not None:
                batch.waiters.append(op)
            if self._sleeping and (op.waiter is not None or not self._gathering):
                self._sleeping = False
                self._wake.notify()
        return op

    def _wait(self, op: _Op, timeout: float | None) -> Any:
        return op.result(self.timeout if timeout is None else timeout)

    def _row(self, payload: Any, key: str | None, idem: str | None, priority: int,
             run_at: float | None, max_attempts: int | None, now: float) -> tuple[Any, ...]:
        priority, run_at, max_attempts = checked_options(key, idem, priority, run_at, max_attempts)
        return (priority, now if run_at is None else run_at, key,
                self.max_attempts if max_attempts is None else max_attempts, now, idem, _encode(payload))

    def submit(
        self, payload: Any, *, key: str | None = None, idempotency_key: str | None = None,
        priority: int = 0, run_at: float | None = None, max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> int:
        row = self._row(payload, key, idempotency_key, priority, run_at, max_attempts, self._clock())
        checked_size(row[6], self.max_payload_bytes)
        ids: list[int] = self._wait(self._add(_Op(_SUBMIT, ([row], None if idempotency_key else row), blocking=True)), timeout)
        return ids[0]

    def submit_many(
        self, payloads: Iterable[Any], *, key: str | None = None, priority: int = 0,
        run_at: float | None = None, max_attempts: int | None = None, timeout: float | None = None,
    ) -> list[int]:
        now = self._clock()
        common = self._row(None, key, None, priority, run_at, max_attempts, now)[:6]
        items = payloads if isinstance(payloads, list) else list(payloads)
        if not items:
            return []
        doc = _document(items)
        if doc is not None:  # the common case: JSON payloads, the call's options
            if len(doc) * 4 > self.max_payload_bytes:  # one of them may be past the limit: each is looked at
                for item in items:
                    checked_size(_json_text(item), self.max_payload_bytes)
            checked_size(doc, self._most)  # the batch is bound as one value
            ids: list[int] = self._wait(self._add(_Op(_SUBMIT, (None, (common[:5], doc, len(items))), blocking=True)),
                                        timeout)
            return list(ids)
        rows = [
            self._row(p.payload, p.key, p.idempotency_key, p.priority, p.run_at, p.max_attempts, now)
            if type(p) is Submission else (*common, _encode(p))
            for p in items
        ]
        for r in rows:
            checked_size(r[6], self.max_payload_bytes)
        # Flattened here, on the caller's thread, for the store thread's multi-row INSERTs.
        flat = None if any(r[5] is not None for r in rows) else [v for r in rows for v in r]
        ids = self._wait(self._add(_Op(_SUBMIT, (rows, flat), blocking=True)), timeout)
        return list(ids)

    def claim(self, node: str, n: int, lease: float = 30.0, *, wait: float = 0.0, start: int = 0,
              timeout: float | None = None) -> list[Job]:
        n, lease, wait = checked_count("n", n), checked_seconds("lease", lease), checked_seconds("wait", wait)
        start = checked_count("start", start)
        if n <= 0:
            return []
        until = time.monotonic() + wait if wait > 0 else None
        op = self._add(_Op(_CLAIM, (checked_node(node), n, lease, start), until, blocking=True))
        claimed = self._wait(op, (self.timeout if timeout is None else timeout) + max(0.0, wait))
        if not claimed:
            return []
        # Read here, on the claimer's thread: the store thread only fetched one JSON document.
        doc, token, until = claimed
        rows = json.loads(doc)
        rows.sort(key=lambda r: (-r[3], r[7], r[0]))
        return [_new(Job, (r[0], bytes.fromhex(r[9]) if r[8] else r[9], r[1], r[2], r[3], r[4], token, node, until,
                           r[5], r[6])) for r in rows]

    def renew(self, node: str, lease: float = 30.0, *, exclude: Iterable[int] = (),
              timeout: float | None = None) -> int:
        args = (checked_node(node), checked_seconds("lease", lease), [checked_id("exclude", i) for i in exclude])
        count: int = self._wait(self._add(_Op(_RENEW, args, blocking=True)), timeout)
        return count

    def ack(self, job: Job) -> _Op:  # the future: result() -> bool
        return self._add(_Op(_ACK, tuple(checked_pairs((job,)))))

    def ack_many(self, jobs: Iterable[Job]) -> _Op:  # the future: result() -> list of the fenced ids
        op = _Op(_ACK, checked_pairs(jobs))
        if not op.args:
            op.value = []
            return op
        return self._add(op)

    def start(self, jobs: Iterable[Job]) -> _Op:  # the future: result() -> int
        op = _Op(_START, checked_pairs(jobs))
        if not op.args:
            op.value = 0
            return op
        return self._add(op)

    def fail(self, job: Job, error: str, *, retry_in: float | None = None, dead: bool = False) -> _Op:
        retry_in = None if retry_in is None else checked_seconds("retry_in", retry_in)
        checked_pairs((job,))
        return self._add(_Op(_FAIL, (job, one_line(error), retry_in, dead)))

    def complete(self, job: Job, work: Callable[[Any], T], *, timeout: float | None = None) -> T:
        """``work(connection)`` and the fenced ack of ``job`` in one ``BEGIN IMMEDIATE`` transaction
        on the file (see the protocol), on a connection of the calling thread's own (opened on first
        use, kept until close). The transaction holds the file's write lock while ``work`` runs: the
        store thread's next commit waits for it, so keep the work short. ``timeout`` bounds the wait
        for that lock. LeaseLost when the job is no longer held under its claim."""
        checked_pairs((job,))
        if self._closing:
            raise StoreClosed(f"intake store {self.url} is closed")
        limit = self.timeout if timeout is None else timeout
        conn = self._own_connection()
        try:
            conn.execute(f"PRAGMA busy_timeout = {max(0, int(limit * 1000))}")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.url) from None
        try:
            value = work(conn)
            if conn.execute("DELETE FROM jobs WHERE id = ? AND token = ? AND state = 1",
                            (job.id, job.token)).rowcount != 1:
                raise LeaseLost(f"intake store {self.url}: job {job.id} is no longer held by this claim (its "
                                "lease ran out, or it was released); its work was rolled back")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a failed COMMIT may have ended it already
            with self._lock:
                self._m["fenced"] += isinstance(exc, LeaseLost)
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc, self.url) from None
            raise
        with self._lock:
            self._m["acked"] += 1
        return value

    def _own_connection(self) -> sqlite3.Connection:
        """The calling thread's connection for :meth:`complete`: the store's pragmas, autocommit
        outside its transactions."""
        conn: sqlite3.Connection | None = getattr(self._threads, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=self._busy_timeout,
                                       check_same_thread=False)  # closed by close(), on another thread
                conn.execute(f"PRAGMA synchronous = {self._sync}")
                conn.execute("PRAGMA foreign_keys = OFF")
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.url) from None
            self._threads.conn = conn
            with self._lock:
                self._own.append(conn)
        return conn

    def release(self, jobs: Iterable[Job], *, timeout: float | None = None) -> int:
        pairs = checked_pairs(jobs)
        if not pairs:
            return 0
        count: int = self._wait(self._add(_Op(_RELEASE, pairs, blocking=True)), timeout)
        return count

    def flush(self, timeout: float | None = None) -> None:
        self._wait(self._add(_Op(_FLUSH, None, blocking=True)), timeout)

    def requeue(self, job_id: int, *, timeout: float | None = None) -> None:
        self._wait(self._add(_Op(_REQUEUE, checked_id("job id", job_id), blocking=True)), timeout)

    def _read(self, fn: Callable[[sqlite3.Connection, float], Any]) -> Any:
        return self._wait(self._add(_Op(_READ, fn, blocking=True)), None)

    def dead(self, limit: int = 100) -> list[DeadJob]:
        limit = checked_count("limit", limit, 0)

        def read(conn: sqlite3.Connection, now: float) -> list[DeadJob]:
            rows = conn.execute(
                "SELECT id, payload, key, attempts, errors, submitted_at, died_at, idem_key FROM dead "
                "ORDER BY died_at, id LIMIT ?", (limit,)).fetchall()
            return [DeadJob(r[0], _shown_payload(r[1]), r[2], r[3], _errors(r[4]), r[5], r[6], r[7]) for r in rows]
        result: list[DeadJob] = self._read(read)
        return result

    def jobs(self, state: str | None = None, limit: int = 100) -> list[JobInfo]:
        limit = checked_count("limit", limit, 0)
        if state not in (None, "ready", "delayed", "running"):
            raise InvalidArgument(f"no job state {state!r} (ready, delayed, running)")

        def read(conn: sqlite3.Connection, now: float) -> list[JobInfo]:
            where = {None: "1", "ready": "state = 0 AND run_at <= ?1", "delayed": "state = 0 AND run_at > ?1",
                     "running": "state = 1"}[state]
            rows = conn.execute(
                f"SELECT id, state, key, priority, attempts, run_at, submitted_at, owner, lease_until, errors, "
                f"payload FROM jobs WHERE {where} ORDER BY state DESC, priority DESC, run_at, id LIMIT ?2",
                (now, limit)).fetchall()
            out = []
            for r in rows:
                name = "running" if r[1] == _RUNNING else ("ready" if r[5] <= now else "delayed")
                errs = _errors(r[9])
                out.append(JobInfo(r[0], name, r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                                   errs[-1].error if errs else None, _shown_payload(r[10])))
            return out
        result: list[JobInfo] = self._read(read)
        return result

    def stats(self) -> Stats:
        def read(conn: sqlite3.Connection, now: float) -> Stats:
            ready, delayed, running, oldest = conn.execute(
                "SELECT sum(state = 0 AND run_at <= ?1), sum(state = 0 AND run_at > ?1), sum(state = 1), "
                "min(CASE WHEN state = 0 AND run_at <= ?1 THEN max(run_at, submitted_at) END) FROM jobs",
                (now,)).fetchone()
            dead = conn.execute("SELECT count(*) FROM dead").fetchone()[0]
            return Stats(ready or 0, running or 0, delayed or 0, dead,
                         None if oldest is None else max(0.0, now - oldest))
        result: Stats = self._read(read)
        return result

    def metrics(self) -> StoreMetrics:
        m = self._m
        try:
            wal: int | None = os.stat(self.path + "-wal").st_size
        except OSError:
            wal = None
        return StoreMetrics(m["commits"], m["committed_ops"], m["last_batch"], m["submitted"], m["acked"],
                            m["failed"], m["dead_lettered"], m["rescued"], m["fenced"],
                            self._commit_seconds, wal)

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closing:
                first = False
            else:
                first = self._closing = True
                self._wake.notify()
        self._thread.join(self.timeout if timeout is None else timeout)
        with self._lock:
            own, self._own = self._own, []
        for conn in own:  # complete()'s, one per thread that called it
            conn.close()
        if first and not self._thread.is_alive():
            logs.intake_store_closed(log, self.url)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the store thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the store thread must never die silently
            logs.intake_store_crashed(log, self.url, exc_info=exc)
            self._abandon(StoreError(f"intake store {self.url}: its store thread died: {one_line(exc)}"))
        finally:
            self._stop_checkpoints.set()
            self._checkpointer.join()
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                logs.intake_store_close_failed(log, self.url, one_line(exc))

    def _loop(self) -> None:
        last_reap = last_prune = last_size = time.monotonic()
        closing_since: float | None = None
        retry_at = 0.0
        rejoin = 0  # blocking calls in the tick just committed
        while True:
            now = time.monotonic()
            wait_for = self._checkpoint_interval
            if self._waiting:
                wait_for = min(wait_for, self._poll, *(max(0.0, op.until - now) for op in self._waiting if op.until))
            if self._carried:
                wait_for = min(wait_for, max(0.0, retry_at - now))
            with self._lock:
                if not self._next.size and not self._closing and wait_for > 0:
                    self._sleeping = True
                    self._wake.wait(wait_for)
                    self._sleeping = False
                if self._next.size and not self._next.waiters and not self._closing:
                    # Only acks, fails, start marks: nobody waits for them. A moment for a call that
                    # waits (a claim: its caller is reading the last answer) to share their commit.
                    self._sleeping = self._gathering = True
                    self._wake.wait(GATHER)
                    self._sleeping = self._gathering = False
                if self._next.size and rejoin > len(self._next.waiters) and not self._closing:
                    # The callers the last tick answered call again at once when busy (a producer's
                    # next batch, the claimer's next claim): a moment for them to share this commit,
                    # rather than each waiting out a whole tick for the next one.
                    rejoin_until = time.monotonic() + REJOIN
                    while len(self._next.waiters) < rejoin and not self._closing:
                        left = rejoin_until - time.monotonic()
                        if left <= 0:
                            break
                        self._sleeping = True
                        self._wake.wait(left)
                        self._sleeping = False
                batch = self._next
                if batch.size:
                    self._next = _Batch()
                rejoin = len(batch.waiters)
                closing = self._closing
            now = time.monotonic()
            by_kind = batch.kinds if batch.size else [[] for _ in range(_KINDS)]
            batches = {batch} if batch.size else set()
            extra: list[_Op] = []
            if self._carried and (now >= retry_at or closing):
                extra += self._carried
                self._carried = []
            expired = [op for op in self._waiting if op.until is not None and op.until <= now]
            if expired:
                self._waiting = [op for op in self._waiting if op not in expired]
                for op in expired:
                    op.value = []
                    if op.batch is not None:
                        op.batch.wake()
            if self._waiting and (batch.size or extra or self._work_visible()):
                extra += self._waiting  # this tick may have added or freed claimable jobs
                self._waiting = []
            for op in extra:
                by_kind[op.kind].append(op)
                if op.batch is not None:
                    batches.add(op.batch)
            size = batch.size + len(extra)
            reap = bool(by_kind[_CLAIM]) and now - last_reap >= min(1.0, self._poll * 10)
            if size:
                self._inflight = by_kind
                submits = by_kind[_SUBMIT]
                if len(submits) >= SPLIT_SUBMITS and size > len(submits):
                    # Many callers wait for their submits alone: commit those first and answer them
                    # (they run while the rest is committed), then the rest.
                    only: list[list[_Op]] = [[] for _ in range(_KINDS)]
                    only[_SUBMIT] = submits
                    self._inflight = only
                    self._tick(only, len(submits), batches, False, final=False)
                    by_kind[_SUBMIT] = []
                    size -= len(submits)
                    self._inflight = by_kind
                if self._tick(by_kind, size, batches, reap):
                    last_reap = now if reap else last_reap
                else:
                    retry_at = now + 0.2
                self._inflight = []
            if now - last_prune >= 60.0:
                last_prune = now
                self._prune()
            if self._copied:
                self._copied = False
                self._checkpoint()  # the frames since the other thread's copy: the next transaction rewinds the log
            # A stat lets go of the GIL: not at every tick, unless the ticks since wrote a lot.
            if now - last_size >= SIZE_EVERY or self._unsized >= self._checkpoint_bytes // SIZE_SHARE or closing:
                last_size, self._unsized = now, 0
                if self._wal_size() > self._checkpoint_bytes:
                    self._checkpoint(truncate=True)
            if closing:
                closing_since = now if closing_since is None else closing_since
                with self._lock:
                    pending = bool(self._next.size)
                # what a failing disk keeps from being written is retried for one timeout, then given up
                if not pending and (not self._carried or time.monotonic() - closing_since > self.timeout):
                    break
        for op in self._waiting:
            op.value = []
            if op.batch is not None:
                op.batch.wake()
        self._waiting = []
        if self._carried:
            logs.intake_store_unwritten(log, self.url, len(self._carried), self._failing or "closed")
            self._abandon(StoreClosed(f"intake store {self.url} closed before it could write"), self._carried)
        self._stop_checkpoints.set()
        self._checkpointer.join()
        self._checkpoint(truncate=True)

    def _abandon(self, error: BaseException, ops: list[_Op] | None = None) -> None:
        with self._lock:
            self._closing = True
            todo = [*(ops or []), *(op for kind in self._inflight for op in kind),
                    *(op for kind in self._next.kinds for op in kind), *self._carried, *self._waiting]
            self._next = _Batch()
        for op in todo:
            if not op.done():
                op.error = error
            if op.batch is not None:
                op.batch.wake()

    def _work_visible(self) -> bool:
        """A cheap read: is there a ready job, or a lapsed lease to take back, for a waiting claim?"""
        now = self._clock()
        try:
            row = self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 0 AND run_at <= ?1) "
                "OR EXISTS (SELECT 1 FROM jobs WHERE state = 1 AND lease_until < ?1)", (now,)).fetchone()
        except sqlite3.Error:
            return True  # let the tick meet (and report) the error
        return bool(row[0])

    def _tick(self, by_kind: list[list[_Op]], size: int, batches: set[_Batch], reap: bool, final: bool = True) -> bool:
        """One transaction for the operations ``by_kind``; True when it committed. Answers every
        operation that is answered, then sets ``batches`` (what their callers wait on)."""
        conn = self._conn
        started = time.perf_counter()
        answers: list[tuple[_Op, Any]] = []
        acks: list[_Op] = by_kind[_ACK]
        fenced: set[int] = set()
        waiting: list[_Op] = []
        counts = dict(submitted=0, acked=0, failed=0, dead_lettered=0, rescued=0, fenced=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                if acks:
                    # First, in one DELETE (a row returned per ack would cost a step each). When it
                    # took fewer than asked (a late ack: rare), the transaction starts again and
                    # looks for the fenced ones first: nothing else was done in it yet. An ack
                    # operation holds one job (``ack``) or a worker round's (``ack_many``).
                    groups = _by_token(pair for op in acks for pair in op.args)
                    asked = sum(len(op.args) for op in acks)
                    if sum(conn.execute(_ACK_SQL, (ids, token)).rowcount for ids, token in groups) != asked:
                        conn.execute("ROLLBACK")
                        conn.execute("BEGIN IMMEDIATE")
                        for ids, token in groups:
                            fenced.update(r[0] for r in conn.execute(_FENCED_SQL, (ids, token)))
                            conn.execute(_ACK_SQL, (ids, token))
                    counts["acked"] += asked - len(fenced)
                    counts["fenced"] += len(fenced)
                if by_kind[_SUBMIT]:
                    self._apply_submits(conn, by_kind[_SUBMIT], answers, counts)
                for op in by_kind[_RELEASE]:
                    n = 0
                    for job_id, token in op.args:
                        n += conn.execute(
                            "UPDATE jobs SET state = 0, attempts = max(0, attempts - 1), owner = NULL, token = NULL, "
                            "lease_until = NULL WHERE id = ? AND token = ? AND state = 1", (job_id, token)).rowcount
                    answers.append((op, n))
                if by_kind[_START]:
                    self._apply_starts(conn, by_kind[_START], answers)
                for op in by_kind[_FAIL]:
                    answers.append((op, self._apply_fail(conn, op, now, counts)))
                for op in by_kind[_RENEW]:
                    node, lease, exclude = op.args
                    n = conn.execute(
                        "UPDATE jobs SET lease_until = ?1 WHERE state = 1 AND owner = ?2 "
                        "AND id NOT IN (SELECT value FROM json_each(?3))",
                        (now + lease, node, json.dumps(exclude))).rowcount
                    answers.append((op, n))
                for op in by_kind[_REQUEUE]:
                    if self._apply_requeue(conn, op.args, now):
                        answers.append((op, None))
                    else:
                        op.error = UnknownJob(f"no dead job {op.args} in intake store {self.url}")
                for op in by_kind[_READ]:
                    try:
                        answers.append((op, op.args(conn, now)))
                    except sqlite3.DatabaseError:
                        raise
                    except Exception as exc:  # a read's own error goes to its caller
                        op.error = exc
                if by_kind[_CLAIM]:
                    if reap:
                        self._reap(conn, now, counts)
                    for op in by_kind[_CLAIM]:
                        jobs = self._apply_claim(conn, op.args, now)
                        if jobs or op.until is None or self._closing:
                            answers.append((op, jobs))
                        else:
                            waiting.append(op)
                for op in by_kind[_FLUSH]:
                    answers.append((op, None))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if by_kind[_CLAIM] and "malformed JSON" in str(exc) and self._bury_unreadable():
                return self._tick(by_kind, size, batches, reap, final)  # again, without them
            self._write_failed(by_kind, exc, batches, final)
            return False
        elapsed = time.perf_counter() - started
        for op, value in answers:
            op.value = value
        if fenced:
            for op in acks:
                late = [job_id for job_id, _ in op.args if job_id in fenced]
                op.value = late if type(op.args) is list else not late
                for job_id in late:
                    logs.intake_late_completion(log, self.url, job_id, "ack", "this node")
        else:
            for op in acks:
                op.value = [] if type(op.args) is list else True
        if waiting:
            own = _Batch()  # set when they are answered; their first batch is set below
            for op in waiting:
                op.batch = own
            self._waiting.extend(waiting)
        m = self._m
        m["commits"] += 1
        m["committed_ops"] += size
        m["last_batch"] = size
        for name, n in counts.items():
            m[name] += n
        self._commit_seconds += elapsed
        if self._failing is not None:
            logs.intake_store_writable(log, self.url)
            self._failing = None
        for batch in batches:
            batch.wake(final)
        return True

    def _write_failed(self, by_kind: list[list[_Op]], exc: sqlite3.Error, batches: set[_Batch],
                      final: bool = True) -> None:
        error = _storage_error(exc, self.url)
        ops = [op for ops in by_kind for op in ops]
        carried = [op for op in ops if op.kind not in _ANSWERED_ON_ERROR]
        answered = [op for op in ops if op.kind in _ANSWERED_ON_ERROR]
        reason = one_line(exc)
        if self._failing != reason:
            logs.intake_store_write_failed(log, self.url, reason, len(answered), len(carried))
            self._failing = reason
        for op in answered:
            op.error = error
        if carried:
            own = _Batch()
            for op in carried:
                op.batch = own
            self._carried = carried + self._carried
        for batch in batches:
            batch.wake(final)

    def _apply_submits(self, conn: sqlite3.Connection, ops: list[_Op], answers: list[tuple[_Op, Any]],
                       counts: dict[str, int]) -> None:
        """Insert every submit of the tick. The rows without idempotency keys, from every call, go in
        as they came, a few multi-row INSERTs for all: AUTOINCREMENT numbers them one after another
        (this transaction holds the write lock), so the last one's id tells every id. A call with
        keys goes row by row."""
        plain: list[Any] = []
        numbered: list[tuple[_Op, int, int]] = []  # (call, its first row, its rows), counted in ``plain``
        keyed: list[_Op] = []
        inserted = 0
        for op in ops:
            rows, flat = op.args
            if rows is None:  # a JSON document of payloads: (common values, document, rows)
                common, doc, n = flat
                self._unsized += len(doc)
                last = conn.execute(_INSERT_DOC_SQL, (*common, doc)).lastrowid or 0
                answers.append((op, range(last - n + 1, last + 1)))
                inserted += n
            elif flat is None:
                keyed.append(op)
            else:
                numbered.append((op, len(plain) // _ROW, len(rows)))
                plain += flat
        inserted += len(plain) // _ROW
        if plain:
            self._unsized += sum(map(len, plain[6::_ROW]))
            first = _insert_rows(conn, plain) - len(plain) // _ROW + 1
            for op, at, n in numbered:
                answers.append((op, range(first + at, first + at + n)))
        for op in keyed:
            ids = []
            for r in op.args[0]:
                idem = r[5]
                if idem is not None:
                    hit = conn.execute("SELECT job_id FROM idempotency WHERE key = ?", (idem,)).fetchone()
                    if hit is not None:
                        ids.append(hit[0])
                        continue
                job_id = conn.execute(_INSERT_SQL, r).lastrowid
                self._unsized += len(r[6])
                if idem is not None:
                    conn.execute("INSERT INTO idempotency (key, job_id, at) VALUES (?, ?, ?)", (idem, job_id, r[4]))
                ids.append(job_id)
                inserted += 1
            answers.append((op, ids))
        counts["submitted"] += inserted

    def _apply_claim(self, conn: sqlite3.Connection, args: tuple[str, int, float, int],
                     now: float) -> tuple[str, int, float] | None:
        """The claimed jobs as one JSON document, with the claim's token and lease (None: none), for
        the claimer's thread to read. One token for the whole claim: a fence is a job's id and its
        claim's token. The first ``start`` are marked started: all of them in the claim's own
        statement (the usual case), else by a second one."""
        node, n, lease, start = args
        token = self._random.getrandbits(63)
        until = now + lease
        if not conn.execute(_TAKE_SQL, (node, token, until, now, n, int(start >= n))).rowcount:
            return None
        if 0 < start < n:
            conn.execute(_START_FIRST_SQL, (until, token, start))
        claimed: str = conn.execute(_CLAIMED_SQL, (until, token)).fetchone()[0]
        return claimed, token, until

    def _apply_starts(self, conn: sqlite3.Connection, ops: list[_Op], answers: list[tuple[_Op, Any]]) -> None:
        """Mark the jobs of every start call in one UPDATE; each call's own count is looked for only
        when some were fenced (marking a job again changes nothing and counts it again)."""
        pairs = [pair for op in ops for pair in op.args]
        marked = sum(conn.execute(_START_SQL, group).rowcount for group in _by_token(pairs))
        if marked == len(pairs) or len(ops) == 1:
            for op in ops:
                answers.append((op, len(op.args) if marked == len(pairs) else marked))
            return
        for op in ops:
            answers.append((op, sum(conn.execute(_START_SQL, group).rowcount for group in _by_token(op.args))))

    def _apply_fail(self, conn: sqlite3.Connection, op: _Op, now: float, counts: dict[str, int]) -> str:
        job, error, retry_in, dead = op.args
        row = conn.execute("SELECT attempts, max_attempts, errors FROM jobs WHERE id = ? AND token = ? AND state = 1",
                           (job.id, job.token)).fetchone()
        if row is None:
            counts["fenced"] += 1
            logs.intake_late_completion(log, self.url, job.id, "fail", job.node)
            return "fenced"
        attempts, max_attempts, errors = row
        history = _append_error(errors, now, attempts, error)
        counts["failed"] += 1
        if dead or attempts >= max_attempts:
            self._bury(conn, job.id, history, now)
            counts["dead_lettered"] += 1
            return "dead"
        delay = backoff(attempts) if retry_in is None else max(0.0, float(retry_in))
        conn.execute("UPDATE jobs SET state = 0, owner = NULL, token = NULL, lease_until = NULL, run_at = ?, "
                     "errors = ? WHERE id = ?", (now + delay, history, job.id))
        return "retry"

    def _bury_unreadable(self) -> bool:
        """Dead-letter the jobs whose stored payload is not valid JSON text: a row written by
        another program, or damaged. A claim reads its jobs' payloads as JSON in its own statement,
        so one such row failed every claim that met it, and the intake took nothing any more. Each
        is dead-lettered unread, its error saying why (``servicehost jobs NAME dead``); the rest go
        on. True when any was found (the failed tick is then tried again, once more at most for
        each such row)."""
        now = self._clock()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute("SELECT id, attempts, errors FROM jobs WHERE typeof(payload) = 'text' "
                                    "AND NOT json_valid(payload)").fetchall()
                for job_id, attempts, errors in rows:
                    history = _append_error(errors, now, attempts, UNREADABLE_PAYLOAD)
                    self._bury(conn, job_id, history, now)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            return False  # the tick's own error is reported
        if rows:
            self._m["dead_lettered"] += len(rows)
            shown = ", ".join(str(r[0]) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
            logs.intake_payloads_unreadable(log, self.url, len(rows), f"job(s) {shown}")
        return bool(rows)

    def _bury(self, conn: sqlite3.Connection, job_id: int, history: str, now: float) -> None:
        conn.execute(
            "INSERT INTO dead (id, priority, key, attempts, max_attempts, submitted_at, died_at, idem_key, errors, "
            "payload) SELECT id, priority, key, attempts, max_attempts, submitted_at, ?, idem_key, ?, payload "
            "FROM jobs WHERE id = ?", (now, history, job_id))
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def _reap(self, conn: sqlite3.Connection, now: float, counts: dict[str, int]) -> None:
        """Take back the jobs whose lease ran out: ready at once, or dead when their attempts are spent;
        a job never marked started gets its claim's attempt back (its handler never ran)."""
        rows = conn.execute("SELECT id, attempts, max_attempts, errors, owner, started FROM jobs "
                            "WHERE state = 1 AND lease_until < ?", (now,)).fetchall()
        for job_id, attempts, max_attempts, errors, owner, started in rows:
            if not started:  # its handler never ran: the claim's attempt is given back, as by a release
                conn.execute("UPDATE jobs SET state = 0, attempts = max(0, attempts - 1), owner = NULL, token = NULL, "
                             "lease_until = NULL WHERE id = ?", (job_id,))
                continue
            history = _append_error(errors, now, attempts, f"lease lost: node {owner} stopped renewing it")
            if attempts >= max_attempts:
                self._bury(conn, job_id, history, now)
                counts["dead_lettered"] += 1
                logs.intake_lease_dead(log, self.url, job_id, attempts, owner)
            else:
                conn.execute("UPDATE jobs SET state = 0, owner = NULL, token = NULL, lease_until = NULL, "
                             "run_at = ?, errors = ? WHERE id = ?", (now, history, job_id))
        if rows:
            counts["rescued"] += len(rows)
            logs.intake_leases_lapsed(log, self.url, len(rows), ", ".join(sorted({r[4] or "?" for r in rows})))

    def _apply_requeue(self, conn: sqlite3.Connection, job_id: int, now: float) -> bool:
        moved = conn.execute(
            "INSERT INTO jobs (id, state, priority, run_at, key, attempts, max_attempts, submitted_at, idem_key, "
            "errors, payload) SELECT id, 0, priority, ?, key, 0, max_attempts, submitted_at, idem_key, errors, payload "
            "FROM dead WHERE id = ?", (now, job_id)).rowcount
        if moved:
            conn.execute("DELETE FROM dead WHERE id = ?", (job_id,))
        return bool(moved)

    # -- housekeeping ------------------------------------------------------------------------------
    def _wal_size(self) -> int:
        try:
            return os.stat(self.path + "-wal").st_size
        except OSError:
            return 0

    def _checkpoints(self) -> None:
        """(A thread and a connection of their own.) A passive checkpoint every
        ``checkpoint_interval``: it copies the log into the database while the store thread goes on
        committing. On the store thread, a checkpoint (milliseconds: it syncs the database file)
        held every caller of the next tick behind it, once a second: the slowest submits."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self._busy_timeout)
            conn.execute(f"PRAGMA synchronous = {self._sync}")
        except sqlite3.Error as exc:
            logs.intake_checkpoint_failed(log, self.url, "passive", one_line(exc))
            return
        try:
            while not self._stop_checkpoints.wait(self._checkpoint_interval):
                try:
                    frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
                except sqlite3.Error as exc:
                    logs.intake_checkpoint_failed(log, self.url, "passive", one_line(exc))
                    continue
                if frames > 0:  # the store thread copies what came meanwhile, after its next tick
                    self._copied = True
        finally:
            conn.close()

    def _checkpoint(self, truncate: bool = False) -> None:
        """Copy the WAL into the database: passive, or truncating once it passes the size limit."""
        mode = "TRUNCATE" if truncate or self._wal_size() > self._checkpoint_bytes else "PASSIVE"
        try:
            self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            logs.intake_checkpoint_failed(log, self.url, mode.lower(), one_line(exc))

    def _prune(self) -> None:
        """Forget the idempotency keys of jobs done (or dead) longer than the retention."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "DELETE FROM idempotency WHERE at < ? AND job_id NOT IN (SELECT id FROM jobs) "
                    "AND job_id NOT IN (SELECT id FROM dead)", (self._clock() - self._retention,))
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            logs.intake_prune_failed(log, self.url, one_line(exc))


def _errors(text: str | None) -> tuple[ErrorRecord, ...]:
    return tuple(ErrorRecord(*e) for e in json.loads(text)) if text else ()


def _append_error(text: str | None, now: float, attempt: int, error: str) -> str:
    history = json.loads(text) if text else []
    history.append([now, attempt, error])
    return json.dumps(history[-ERROR_HISTORY:], ensure_ascii=False)


