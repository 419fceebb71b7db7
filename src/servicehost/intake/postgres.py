"""The PostgreSQL intake store: many machines on one database, one store thread per process.

``open_store("postgresql://user@host/db?schema=servicehost")`` (psycopg 3: the optional extra
``servicehost[postgres]``). The same :class:`~servicehost.intake.store.Store` contract as the
SQLite store, and the same shape: callers append operations to the current batch; the store
thread runs the whole batch as **one short transaction** on its own connection, pipelined (BEGIN,
the statements and COMMIT in one round trip) — the submits (one multi-row INSERT from arrays, one
``pg_notify`` for all), releases, the start marks (one ``UPDATE``), the acks (one fenced
``DELETE``), the fails (one statement), lease renewals (one per node), requeues, reads, the reaping
of lapsed leases when due, the claims — then ``COMMIT``, and only then answers the callers. No
transaction is ever held open while waiting for anything. The hot table is vacuumed by the store
too (a thread of its own, every ``vacuum`` dead row versions): autovacuum looks too seldom for a
queue, and every claim steps over the dead index entries left until a vacuum.

**Claims** are one statement each: a CTE picks up to ``n`` ready jobs ``FOR UPDATE SKIP LOCKED``
(so nodes claiming at once take different jobs without waiting for each other) and an
``UPDATE ... RETURNING`` marks them (attempt + 1, a fresh token, the node, the lease). **Per-key
serialization**: only the head of a key is eligible — a keyed job is claimable only when no job
of its key is running and none older is unfinished (a retrying job holds its key). Two claimers
may both see a key's head as eligible; the row lock lets only one take it, and the other finds
the head still unfinished in its snapshot, so it never takes the next. That argument needs a
key's ids in commit order: a submit takes a transaction advisory lock per key (ordered, so no
deadlock) before its ids are drawn, so the submits of one key commit one after the other.

**Fencing**: acks, fails and releases match a job by id, token and node; a node whose lease ran
out (and was taken back by anyone's reaper) changes nothing and is counted as fenced. **Times**
are the database server's clock (each process measures its offset when it connects), so leases
compare across machines whatever their clocks.

**Wake-ups**: a waiting ``claim(wait=...)`` wakes on a local submit at once, on another node's
through ``LISTEN``/``NOTIFY`` (one ``pg_notify`` per transaction, not per job; a listener thread
with its own connection), and otherwise polls every ``poll`` seconds with one indexed read — the
fallback behind a transaction-mode pooler, where LISTEN is lost (``?listen=0`` turns it off).

**Outbox**: :func:`enqueue` (or :meth:`PostgresStore.enqueue`) inserts a job on the caller's own
connection, inside the caller's transaction: it exists only if that transaction commits.

**Schema**: explicit and versioned (``intake/schema/pg_vN.py``). Opening a store creates the
schema when it is absent (under an advisory lock: several nodes starting at once create it once);
an older schema is migrated only by ``servicehost jobs NAME migrate`` (:func:`migrate_url`); a
newer one, or a schema holding tables that are not ours, is refused untouched.

**Failures**: a lost connection or a server that is down makes the waiting submits, claims,
releases and requeues fail with :class:`StoreUnavailable` (nothing of them was written — unless
the connection was lost once the COMMIT was sent, where no client can know; idempotency keys are
the answer); acks, fails, start marks and renewals are kept and written once the store thread has
reconnected (it retries with a growing pause), and whatever the claims of a failed tick took (if
it committed after all) is given back by the next one. Every message names the URL redacted,
never its password.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import sql

from .. import logs
from .schema import pg_v1
from .store import (
    DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT, ERROR_HISTORY, DeadJob, ErrorRecord, InvalidArgument, Job, JobInfo,
    PayloadError, LeaseLost, SchemaError, Stats, StoreClosed, StoreError, StoreFull, StoreMetrics, StoreTimeout, StoreUnavailable,
    UNREADABLE_PAYLOAD, StoreURL, Submission, UnknownJob, backoff, one_line, redact,
)
from .store import checked_count, checked_id, checked_node, checked_options, checked_seconds, checked_triples
from .store import checked_size, checked_store_options
from .store import to_json as _to_json

T = TypeVar("T")

log = logs.log.getChild("intake")

_UNSET: Any = object()

# Operation kinds, in the order a tick applies them.
_SUBMIT, _RELEASE, _START, _ACK, _FAIL, _RENEW, _REQUEUE, _READ, _CLAIM, _FLUSH = range(10)
_KINDS = 10
# Kinds a failed write answers with the error (nothing was written); the others are retried.
_ANSWERED_ON_ERROR = frozenset({_SUBMIT, _RELEASE, _REQUEUE, _READ, _CLAIM})

VERSIONS = (pg_v1,)
"""The PostgreSQL schema versions, in order: version N turns N-1 into N."""
LATEST = len(VERSIONS)
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# URL query options the store takes; every other option goes to libpq (sslmode, connect_timeout...).
_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "schema": str, "listen": lambda v: v.lower() not in ("0", "false", "no", "off"), "poll": float,
    "timeout": float, "max_attempts": int, "idempotency_retention": float, "reap_interval": float, "vacuum": int,
    "max_payload_bytes": int,
}
#: The most a PostgreSQL field holds (1 GB): a payload's text or bytes, at most.
MAX_FIELD = (1 << 30) - 1
_LOCK_PREFIX = "servicehost.intake:"


class _Op:
    """One call's operation, and its answer once its transaction is committed. It is the future
    an ``ack``/``fail`` returns (``result(timeout)``, ``done()``)."""

    __slots__ = ("kind", "args", "value", "error", "until", "deadline", "_lock")

    def __init__(self, kind: int, args: Any, until: float | None = None, deadline: float | None = None) -> None:
        self.kind = kind
        self.args = args
        self.value: Any = _UNSET
        self.error: BaseException | None = None
        self.until = until        # a waiting claim: monotonic time it gives up waiting for work
        self.deadline = deadline  # a blocking call: monotonic time its caller gives up
        self._lock = threading.Lock()
        self._lock.acquire()

    def done(self) -> bool:
        return self.value is not _UNSET or self.error is not None

    def answer(self, value: Any = None, error: BaseException | None = None) -> None:
        """(The store thread.) Set the answer and wake whoever waits for it."""
        if self.done():
            return
        if error is not None:
            self.error = error
        else:
            self.value = value
        self._lock.release()

    def result(self, timeout: float | None = None) -> Any:
        """The answer, once committed; raises what the store raised, StoreTimeout past ``timeout``."""
        if not self.done():
            if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
                raise StoreTimeout(f"the intake store did not commit within {timeout:.3g}s; it may still do so")
            self._lock.release()
        if self.error is not None:
            raise self.error
        return self.value


def _encode(payload: Any) -> tuple[str | None, bytes | None]:
    """(JSON text, None) or (None, bytes)."""
    if isinstance(payload, bytes):
        return None, payload
    if isinstance(payload, (bytearray, memoryview)):
        return None, bytes(payload)
    try:
        return _to_json(payload), None
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"a payload must be a JSON value or bytes: {exc}") from None


def _decode(text: str | None, data: bytes | None) -> Any:
    return bytes(data) if text is None and data is not None else json.loads(text) if text is not None else None


def _shown_payload(text: str | None, data: bytes | None) -> Any:
    """A payload as ``jobs``/``dead`` list it: decoded, or its stored text when that is not JSON."""
    try:
        return _decode(text, data)
    except ValueError:
        return text


def _errors(history: Any) -> tuple[ErrorRecord, ...]:
    if isinstance(history, str):
        history = json.loads(history)
    return tuple(ErrorRecord(float(e[0]), int(e[1]), str(e[2])) for e in history or ())


def _check_schema_name(name: str, url: str) -> str:
    if not _SCHEMA_NAME.fullmatch(name):
        raise InvalidArgument(f"intake store {url}: schema must be a lower-case identifier (a-z, 0-9, _), not {name!r}")
    return name


# -- SQL -------------------------------------------------------------------------------------------
# Each statement is formatted once per store with its schema: {s} is the quoted schema name.
_ROW_ARRAYS = ("%s::int[], %s::float8[], %s::text[], %s::int[], %s::float8[], %s::text[], %s::text[], %s::bytea[]")
# A fenced batch (acks, starts, releases): its (id, token, node) triples as arrays, joined to the
# rows by primary key — a nested loop, as the store's session allows no other join (a hash join
# would read the whole table, or the small partial index of running jobs with the dead entries a
# busy table piles up between vacuums). A token is set only while a job runs.
_FENCED = "unnest(%(id)s::bigint[], %(token)s::bigint[], %(node)s::text[]) AS a(id, token, node)"
_PAIRED = "j.id = a.id AND j.token = a.token AND j.owner = a.node AND j.state + 0 = 1"  # + 0: no index on state
_SQL = {
    # Take the transaction advisory locks of the submits' keys, in one order (no deadlock).
    "lock_keys": "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtextextended(%s || k, 0) AS h "
                 "FROM unnest(%s::text[]) AS k ORDER BY 1) AS keys",
    "insert": "INSERT INTO {s}.jobs (priority, run_at, key, max_attempts, submitted_at, idem_key, payload, "
              "payload_bytes) SELECT p, r, k, m, t, i, j, b FROM unnest(" + _ROW_ARRAYS + ") WITH ORDINALITY "
              "AS u(p, r, k, m, t, i, j, b, o) ORDER BY o RETURNING id",
    "insert_one": "INSERT INTO {s}.jobs (id, priority, run_at, key, max_attempts, submitted_at, idem_key, payload, "
                  "payload_bytes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "idem_take": "INSERT INTO {s}.idempotency (key, job_id, at) VALUES (%s, nextval(pg_get_serial_sequence("
                 "'{s}.jobs', 'id')), %s) ON CONFLICT (key) DO NOTHING RETURNING job_id",
    "idem_get": "SELECT job_id FROM {s}.idempotency WHERE key = %s",
    "notify": "SELECT pg_notify(%s, '')",
    "release": "UPDATE {s}.jobs AS j SET state = 0, attempts = greatest(0, j.attempts - 1), owner = NULL, "
               "token = NULL, lease_until = NULL FROM " + _FENCED + " WHERE " + _PAIRED,
    "start": "UPDATE {s}.jobs AS j SET started = true FROM " + _FENCED + " WHERE " + _PAIRED + " RETURNING j.id",
    "ack": "DELETE FROM {s}.jobs AS j USING " + _FENCED + " WHERE " + _PAIRED + " RETURNING j.id",
    "ack_one": "DELETE FROM {s}.jobs WHERE id = %s AND token = %s AND owner = %s AND state = 1 RETURNING id",
    # The fails of a tick in one statement: each fenced by id, token and node (FOR UPDATE re-checks
    # them on a row another node's reaper changed meanwhile), its error appended to the last few,
    # then dead-lettered (attempts spent, or dead asked) or ready again after its delay (NULL: the
    # store's backoff, base 1 s, cap 1 h, times the jitter given).
    "fail": """
WITH f AS (
    SELECT * FROM unnest(%(id)s::bigint[], %(token)s::bigint[], %(node)s::text[], %(error)s::text[],
                         %(delay)s::float8[], %(dead)s::bool[], %(jitter)s::float8[])
        AS f(id, token, node, error, delay, dead, jitter)),
hit AS (
    SELECT j.id, f.dead OR j.attempts >= j.max_attempts AS bury,
           coalesce(f.delay, least(3600.0, 2.0 ^ least(greatest(j.attempts - 1, 0), 60)) * f.jitter) AS delay,
           coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_array(%(now)s::float8, j.attempts, f.error))
               AS history
    FROM {s}.jobs AS j JOIN f ON j.id = f.id AND j.token = f.token AND j.owner = f.node AND j.state + 0 = 1
    FOR UPDATE OF j),
trimmed AS (
    SELECT id, bury, delay, CASE WHEN jsonb_array_length(history) > %(keep)s THEN history - 0 ELSE history END
        AS history FROM hit),
gone AS (
    DELETE FROM {s}.jobs AS j USING trimmed AS t WHERE j.id = t.id AND t.bury
    RETURNING j.id, j.priority, j.key, j.attempts, j.max_attempts, j.submitted_at, j.idem_key, t.history,
              j.payload, j.payload_bytes),
buried AS (
    INSERT INTO {s}.dead (id, priority, key, attempts, max_attempts, submitted_at, died_at, idem_key, errors,
                          payload, payload_bytes)
    SELECT id, priority, key, attempts, max_attempts, submitted_at, %(now)s, idem_key, history, payload,
           payload_bytes FROM gone),
retried AS (
    UPDATE {s}.jobs AS j SET state = 0, owner = NULL, token = NULL, lease_until = NULL,
        run_at = %(now)s + t.delay, errors = t.history
    FROM trimmed AS t WHERE j.id = t.id AND NOT t.bury)
SELECT id, bury FROM trimmed
""",
    # The jobs of claims whose answer never reached their caller (the connection broke around the
    # COMMIT): the claim may have committed, and the node, not knowing them, would renew their
    # leases for as long as it lives. Given back like a release (the attempt not counted).
    "release_lost": "UPDATE {s}.jobs SET state = 0, attempts = greatest(0, attempts - 1), owner = NULL, "
                    "token = NULL, lease_until = NULL, started = false "
                    "WHERE state = 1 AND token = ANY(%s::bigint[]) AND NOT started",
    "renew": "UPDATE {s}.jobs SET lease_until = %s WHERE state = 1 AND owner = %s AND id <> ALL(%s::bigint[])",
    # A requeued job keeps its id, ahead of its key's later jobs: first wait for (and hold) the
    # key's live rows, so a claim of one of them under way commits first and the next claims see
    # it running. (Left open: a claim whose snapshot predates the requeue's commit and that locks
    # a later job of the key after it; the window is that claim statement's own duration.)
    "requeue_key": "SELECT count(*) FROM (SELECT 1 FROM {s}.jobs WHERE key = (SELECT key FROM {s}.dead WHERE id = %s) "
                   "ORDER BY id FOR UPDATE) AS held",
    "requeue": "WITH d AS (DELETE FROM {s}.dead WHERE id = %s RETURNING *) "
               "INSERT INTO {s}.jobs (id, state, priority, run_at, key, attempts, max_attempts, submitted_at, "
               "idem_key, errors, payload, payload_bytes) SELECT id, 0, priority, %s, key, 0, max_attempts, "
               "submitted_at, idem_key, errors, payload, payload_bytes FROM d RETURNING id",
    # Take back the jobs whose lease ran out: a started one costs its attempt (the error kept; dead
    # when its attempts are spent); one never started gets its attempt back, like a release.
    "reap": """
WITH lapsed AS (
    SELECT j.id, j.owner, j.attempts, j.started, j.started AND j.attempts >= j.max_attempts AS bury,
           CASE WHEN j.started THEN coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_array(
               %(now)s::float8, j.attempts, 'lease lost: node ' || coalesce(j.owner, '?') || ' stopped renewing it'))
           ELSE j.errors END AS history
    FROM {s}.jobs AS j WHERE j.state = 1 AND j.lease_until < %(now)s
    FOR UPDATE SKIP LOCKED),
trimmed AS (
    SELECT id, owner, attempts, started, bury,
           CASE WHEN jsonb_array_length(history) > %(keep)s THEN history - 0 ELSE history END AS history
    FROM lapsed),
gone AS (
    DELETE FROM {s}.jobs AS j USING trimmed AS t WHERE j.id = t.id AND t.bury
    RETURNING j.id, j.priority, j.key, j.attempts, j.max_attempts, j.submitted_at, j.idem_key, t.history,
              j.payload, j.payload_bytes),
buried AS (
    INSERT INTO {s}.dead (id, priority, key, attempts, max_attempts, submitted_at, died_at, idem_key, errors,
                          payload, payload_bytes)
    SELECT id, priority, key, attempts, max_attempts, submitted_at, %(now)s, idem_key, history, payload,
           payload_bytes FROM gone),
back AS (
    UPDATE {s}.jobs AS j SET state = 0, owner = NULL, token = NULL, lease_until = NULL, run_at = %(now)s,
        errors = t.history, started = false,
        attempts = CASE WHEN t.started THEN j.attempts ELSE greatest(0, j.attempts - 1) END
    FROM trimmed AS t WHERE j.id = t.id AND NOT t.bury)
SELECT id, owner, attempts, started, bury FROM trimmed
""",
    # A claim: the eligible jobs, locked (skipping the ones another claim holds), marked as ours
    # (found again by ctid: the lock holds them where they are until the statement ends).
    "claim": """
WITH picked AS (
    SELECT ctid AS tid, priority, run_at, id FROM {s}.jobs AS j
    WHERE state = 0 AND run_at <= %(now)s
      AND (key IS NULL OR NOT EXISTS (
            SELECT 1 FROM {s}.jobs AS k
            WHERE k.key = j.key AND k.id <> j.id AND (k.state = 1 OR k.id < j.id)))
    ORDER BY priority DESC, run_at, id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED),
ranked AS (  -- the first %(start)s in claim order are marked started (window functions and FOR UPDATE: apart)
    SELECT tid, row_number() OVER (ORDER BY priority DESC, run_at, id) <= %(start)s AS go FROM picked)
UPDATE {s}.jobs AS j SET state = 1, attempts = j.attempts + 1, owner = %(node)s, token = %(token)s,
    lease_until = %(until)s, started = ranked.go
FROM ranked WHERE j.ctid = ranked.tid
RETURNING j.id, j.attempts, j.key, j.priority, j.max_attempts, j.submitted_at, j.idem_key, j.run_at,
          j.payload, j.payload_bytes
""",
    "visible": "SELECT EXISTS (SELECT 1 FROM {s}.jobs WHERE state = 0 AND run_at <= %(now)s) "
               "OR EXISTS (SELECT 1 FROM {s}.jobs WHERE state = 1 AND lease_until < %(now)s)",
    "prune": "DELETE FROM {s}.idempotency AS i WHERE at < %s AND NOT EXISTS (SELECT 1 FROM {s}.jobs WHERE id = "
             "i.job_id) AND NOT EXISTS (SELECT 1 FROM {s}.dead WHERE id = i.job_id)",
}


def _statements(conn: psycopg.Connection[Any], schema: str) -> dict[str, bytes]:
    quoted = sql.Identifier(schema).as_string(conn)
    return {name: text.replace("{s}", quoted).encode() for name, text in _SQL.items()}


def _channel(schema: str) -> str:
    """The NOTIFY channel of a schema's jobs."""
    return f"servicehost_intake_{schema}"


# Array parameters as PostgreSQL array literals, built here with str.join (psycopg's list adapter
# looks at every element in Python: a few microseconds each, the store thread's largest cost).
def _ints(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _floats(values: Iterable[float | None]) -> str:
    vals = list(values)
    if None not in vals:
        return "{" + ",".join(map(repr, vals)) + "}"
    return "{" + ",".join("NULL" if v is None else repr(float(v)) for v in vals) + "}"


_QUOTE = str.maketrans({"\\": "\\\\", '"': '\\"'})


def _texts(values: Iterable[str | None]) -> str:
    vals = list(values)
    if not vals:
        return "{}"
    if None not in vals:
        # One pass in C for all: joined by NUL (never in a PostgreSQL text), quoted, then split.
        return '{"' + "\x00".join(vals).translate(_QUOTE).replace("\x00", '","') + '"}'  # type: ignore[arg-type]
    if vals.count(None) == len(vals):
        return "{" + ",".join(["NULL"] * len(vals)) + "}"
    return "{" + ",".join("NULL" if v is None else '"' + v.translate(_QUOTE) + '"' for v in vals) + "}"


def _blobs(values: Iterable[bytes | None]) -> str:
    vals = list(values)
    if vals.count(None) == len(vals):
        return "{" + ",".join(["NULL"] * len(vals)) + "}"
    return "{" + ",".join("NULL" if v is None else '"\\\\x' + v.hex() + '"' for v in vals) + "}"


def _bools(values: Iterable[bool]) -> str:
    return "{" + ",".join("t" if v else "f" for v in values) + "}"


def _rows(rows: list[tuple[Any, ...]]) -> tuple[str, ...]:
    """Submit rows (priority, run_at, key, max_attempts, submitted_at, idem_key, payload, bytes)
    as the eight arrays of the INSERT."""
    p, r, k, m, t, i, j, b = zip(*rows)
    return _ints(p), _floats(r), _texts(k), _ints(m), _floats(t), _texts(i), _texts(j), _blobs(b)


def _fenced(items: Iterable[tuple[int, int, str]]) -> dict[str, str]:
    """The parameters of a fenced batch: (id, token, node) triples as three arrays."""
    ids, tokens, nodes = zip(*items)
    return {"id": _ints(ids), "token": _ints(tokens), "node": _texts(nodes)}


def _count_into(answers: list[tuple[_Op, Any]], op: _Op, cur: psycopg.Cursor[Any]) -> Callable[[], None]:
    """Once committed: ``op``'s answer is how many rows its statement changed."""
    return lambda: answers.append((op, cur.rowcount))


# -- schema ----------------------------------------------------------------------------------------
def schema_version(conn: psycopg.Connection[Any], schema: str) -> int:
    """The version of the intake schema ``schema`` holds (0: absent or empty); SchemaError when it
    is newer than this code, or holds tables that are not an intake store's."""
    # One statement, one snapshot: a schema another process is creating is either all there or not
    # at all (two reads could see its tables but not yet our version table).
    row = conn.execute("SELECT count(*) FILTER (WHERE tablename = 'schema_version'), count(*) "
                       "FROM pg_catalog.pg_tables WHERE schemaname = %s", (schema,)).fetchone()
    assert row is not None
    if not row[0]:
        if row[1]:
            raise SchemaError(f"the schema {schema!r} holds tables but is not a servicehost intake store")
        return 0
    found = conn.execute(
        sql.SQL("SELECT max(version) FROM {}.schema_version").format(sql.Identifier(schema))).fetchone()
    version = int(found[0] or 0) if found else 0
    if version > LATEST:
        raise SchemaError(
            f"the schema {schema!r} is version {version}, newer than this servicehost knows ({LATEST}): "
            "upgrade servicehost")
    return version


def migrate(conn: psycopg.Connection[Any], schema: str, *, create_only: bool = False) -> tuple[int, int]:
    """Bring the schema to :data:`LATEST`; ``(version before, version now)``. ``conn`` must be in
    autocommit mode. The steps run in one transaction under an advisory lock, so several processes
    doing it at once do it once. ``create_only``: create an absent schema, but refuse (SchemaError)
    to migrate an older one — that is ``servicehost jobs NAME migrate``'s to do."""
    before = schema_version(conn, schema)
    if before == LATEST:
        return before, before
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{_LOCK_PREFIX}schema:{schema}",))
        start = schema_version(conn, schema)  # another process may have done it meanwhile
        if start and start < LATEST and create_only:
            raise SchemaError(
                f"the schema {schema!r} is version {start}, older than this servicehost's ({LATEST}): run "
                "`servicehost jobs NAME migrate` (stop the nodes running the older version first)")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        quoted = sql.Identifier(schema).as_string(conn)
        for version in range(start + 1, LATEST + 1):
            step = VERSIONS[version - 1]
            assert step.VERSION == version, step.__name__
            for statement in step.SQL.replace("{schema}", quoted).split(";\n"):
                if statement.strip():
                    conn.execute(statement.encode())
            conn.execute(sql.SQL("INSERT INTO {}.schema_version (version, description) VALUES (%s, %s)").format(
                sql.Identifier(schema)), (version, step.DESCRIPTION))
    return before, LATEST


# -- the outbox ------------------------------------------------------------------------------------
def enqueue(
    conn: psycopg.Connection[Any], payload: Any, *, schema: str = "servicehost", key: str | None = None,
    idempotency_key: str | None = None, priority: int = 0, run_at: float | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> int:
    """Add a job on the caller's connection, inside the caller's transaction, without committing:
    the job exists only if that transaction commits (an outbox: write your rows and the job that
    follows them up together). Returns the job's id (with an ``idempotency_key`` already known, the
    first job's id, adding nothing). The intake schema must exist (open a store once, or
    ``servicehost jobs NAME migrate``). In autocommit mode each statement commits by itself."""
    _check_schema_name(schema, "(outbox)")
    if max_attempts < 1:
        raise InvalidArgument("max_attempts must be at least 1")
    text, data = _encode(payload)
    s = sql.Identifier(schema)
    now_sql = "extract(epoch from clock_timestamp())::float8"
    with conn.cursor() as cur:
        if key is not None:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s || %s, 0))", (_LOCK_PREFIX + schema + ":", key))
        if idempotency_key is not None:
            cur.execute(sql.SQL("INSERT INTO {s}.idempotency (key, job_id, at) VALUES (%s, nextval(pg_get_serial_sequence("
                                "{seq}, 'id')), " + now_sql + ") ON CONFLICT (key) DO NOTHING RETURNING job_id").format(
                s=s, seq=sql.Literal(f"{s.as_string(conn)}.jobs")), (idempotency_key,))
            row = cur.fetchone()
            if row is None:
                cur.execute(sql.SQL("SELECT job_id FROM {}.idempotency WHERE key = %s").format(s), (idempotency_key,))
                found = cur.fetchone()
                assert found is not None
                return int(found[0])
            job_id = int(row[0])
            cur.execute(sql.SQL("INSERT INTO {}.jobs (id, priority, run_at, key, max_attempts, submitted_at, idem_key, "
                                "payload, payload_bytes) VALUES (%s, %s, coalesce(%s, " + now_sql + "), %s, %s, "
                                + now_sql + ", %s, %s, %s)").format(s),
                        (job_id, int(priority), run_at, key, int(max_attempts), idempotency_key, text, data))
        else:
            cur.execute(sql.SQL("INSERT INTO {}.jobs (priority, run_at, key, max_attempts, submitted_at, payload, "
                                "payload_bytes) VALUES (%s, coalesce(%s, " + now_sql + "), %s, %s, " + now_sql
                                + ", %s, %s) RETURNING id").format(s),
                        (int(priority), run_at, key, int(max_attempts), text, data))
            row = cur.fetchone()
            assert row is not None
            job_id = int(row[0])
        cur.execute("SELECT pg_notify(%s, '')", (_channel(schema),))
    return job_id


# -- connecting ------------------------------------------------------------------------------------
def _split_url(parsed: StoreURL) -> tuple[str, dict[str, str]]:
    """The libpq URL (our options taken out) and our options."""
    parts = urlsplit(parsed.url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(name, value) if name in _OPTIONS else theirs.append((name, value)))
    # Spelled out, not urlunsplit: that drops the // of an empty host (postgresql:///db, libpq's
    # "the local socket"), which libpq then cannot read.
    query = urlencode(theirs, quote_via=quote)  # %20, not +: libpq decodes only %XX
    return f"postgresql://{parts.netloc}{parts.path}" + (f"?{query}" if query else ""), ours


def _password(libpq_url: str) -> str | None:
    try:
        return psycopg.conninfo.conninfo_to_dict(libpq_url).get("password")  # type: ignore[return-value]
    except psycopg.Error:
        return None


def _error(exc: BaseException, url: str, secret: str | None, *, committing: bool = False) -> StoreError:
    """A psycopg error as the store error callers see: the URL redacted, the password scrubbed."""
    text = one_line(exc)
    if secret:
        text = text.replace(secret, "***")
    if isinstance(exc, psycopg.errors.DiskFull):
        return StoreFull(f"intake store {url}: the database's disk is full ({text}); nothing was written, retry "
                         "when space is back")
    if isinstance(exc, (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)):
        return StoreTimeout(f"intake store {url}: the database did not answer in time ({text}); nothing was written")
    if committing:
        return StoreUnavailable(f"intake store {url}: the connection was lost while committing ({text}); whether "
                                "it committed is unknown (an idempotency key makes a retry safe)")
    return StoreUnavailable(f"intake store {url}: cannot reach or write the database ({text}); nothing was written")


class PostgresStore:
    """A :class:`~servicehost.intake.store.Store` on PostgreSQL (``open_store("postgresql://...")``).

    Options (URL query or keyword): ``schema`` (servicehost: several services may share one
    database, each in its own schema), ``listen`` (1: wake waiting claims by LISTEN/NOTIFY; 0
    behind a transaction-mode pooler), ``poll`` (a waiting claim's look for work when no
    notification came: 0.5 s), ``timeout`` (default seconds a blocking call waits, and the
    statement timeout: 30), ``max_attempts`` (default per job: 10), ``idempotency_retention``
    (seconds a done job's key still dedupes: 7 days), ``reap_interval`` (how often a claiming node
    takes back lapsed leases: 1 s), ``vacuum`` (vacuum the hot table after this many row versions
    made dead, on a connection of its own: 20000; 0 leaves it to autovacuum). Every other query
    option goes to libpq (``sslmode``,
    ``connect_timeout``, ``application_name``...); put a password in ``PGPASSWORD`` or a
    ``~/.pgpass`` file rather than in the URL. The connections are named
    ``servicehost-<host>:<pid>`` (``application_name``) unless the URL names them.
    """

    def __init__(
        self, url: str, *, schema: str = "servicehost", listen: bool = True, poll: float = 0.5,
        timeout: float = DEFAULT_TIMEOUT, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        idempotency_retention: float = 7 * 86400.0, reap_interval: float = 1.0, vacuum: int = 20000,
        max_payload_bytes: int = MAX_FIELD, clock: Callable[[], float] = time.time,
    ) -> None:
        parsed = StoreURL("postgresql", "", {}, url)
        self._libpq, _ = _split_url(parsed)
        self.url = redact(url)
        self._secret = _password(self._libpq)
        self.schema = _check_schema_name(schema, self.url)
        checked_store_options(
            self.url, {"poll": poll, "timeout": timeout, "idempotency_retention": idempotency_retention,
                       "reap_interval": reap_interval},
            {"max_attempts": (max_attempts, 1, (1 << 31) - 1), "vacuum": (vacuum, 0, 1 << 62),
             "max_payload_bytes": (max_payload_bytes, 1, MAX_FIELD)},
            positive=("poll", "timeout", "reap_interval"))
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_payload_bytes = max_payload_bytes
        self._listen = listen
        self._poll = poll
        self._retention = idempotency_retention
        self._reap_interval = reap_interval
        self._vacuum_rows = max(0, vacuum)
        self._churn = 0  # row versions this store made dead since it last asked for a vacuum
        self._vacuum_due = threading.Event()
        self._vacuumer: threading.Thread | None = None
        self._clock = clock
        self._skew = 0.0  # the database's clock minus ours
        self._name = f"servicehost-{socket.gethostname()}:{os.getpid()}"[:63]
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._next: list[list[_Op]] = [[] for _ in range(_KINDS)]
        self._size = 0
        self._sleeping = False
        self._notified = False
        self._closing = False
        self._carried: list[_Op] = []   # acks/fails/renewals kept after a failed write
        self._lost: list[int] = []      # tokens of claims in failed ticks: their jobs, if any, to give back
        self._waiting: list[_Op] = []   # claims waiting for work
        self._inflight: list[list[_Op]] = []
        self._random = random.SystemRandom()
        self._failing: str | None = None
        self._m = dict(commits=0, committed_ops=0, last_batch=0, submitted=0, acked=0, failed=0,
                       dead_lettered=0, rescued=0, fenced=0)
        self._commit_seconds = 0.0
        self._conn: psycopg.Connection[Any] | None = None
        self._threads = threading.local()  # complete()'s connection, per calling thread
        self._own: list[psycopg.Connection[Any]] = []  # every such connection, closed by close()
        self._sql: dict[str, bytes] = {}
        self._conn = self._connect(create=True)
        self._listener: threading.Thread | None = None
        if listen:
            self._listener = threading.Thread(target=self._listen_loop, name=f"intake-listen:{self.schema}", daemon=True)
            self._listener.start()
        self._thread = threading.Thread(target=self._run, name=f"intake-store:{self.schema}", daemon=True)
        self._thread.start()
        if self._vacuum_rows:
            self._vacuumer = threading.Thread(target=self._vacuum_loop, name=f"intake-vacuum:{self.schema}", daemon=True)
            self._vacuumer.start()

    @classmethod
    def from_url(cls, parsed: StoreURL, **options: Any) -> PostgresStore:
        _, ours = _split_url(parsed)
        kwargs: dict[str, Any] = {}
        for name, text in ours.items():
            try:
                kwargs[name] = _OPTIONS[name](text)
            except ValueError:
                raise InvalidArgument(f"intake store {redact(parsed.url)}: option {name}={text!r} is not valid") from None
        kwargs.update(options)
        return cls(parsed.url, **kwargs)

    # -- connecting --------------------------------------------------------------------------------
    def _open(self, timeout: float) -> psycopg.Connection[Any]:
        """A new autocommit connection; StoreUnavailable (redacted) when it cannot be made."""
        try:
            kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(2, int(min(timeout, 10.0) + 0.999))}
            if "application_name" not in self._libpq:
                kwargs["application_name"] = self._name
            conn = psycopg.connect(self._libpq, **kwargs)
        except psycopg.Error as exc:
            raise _error(exc, self.url, self._secret) from None
        return conn

    def _connect(self, create: bool = False) -> psycopg.Connection[Any]:
        """The store thread's connection: its session settings, the schema checked (created when
        absent, on first open), the clock offset measured."""
        conn = self._open(self.timeout)
        try:
            conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}".encode())
            # Plain index scans, in index order: they mark the dead entries they pass (a bitmap scan
            # does not), so the partial indexes of a busy hot table stay quick between vacuums.
            conn.execute(b"SET enable_bitmapscan = off")
            # Joins by nested loop only: a fenced batch probes the primary key once per job.
            conn.execute(b"SET enable_hashjoin = off")
            conn.execute(b"SET enable_mergejoin = off")
            conn.execute(f"SET idle_in_transaction_session_timeout = {int(max(self.timeout, 60.0) * 1000)}".encode())
            if create:
                before, now = migrate(conn, self.schema, create_only=True)
                if before != now:
                    logs.intake_store_migrated(log, self.url, before, now)
            else:
                now = schema_version(conn, self.schema)
                if now != LATEST:
                    raise SchemaError(f"the schema {self.schema!r} is version {now}, not {LATEST}")
            self._sql = _statements(conn, self.schema)
            self._measure_skew(conn)
        except SchemaError as exc:
            conn.close()
            raise SchemaError(f"intake store {self.url}: {exc}") from None
        except psycopg.Error as exc:
            conn.close()
            raise _error(exc, self.url, self._secret) from None
        if create:
            logs.intake_store_opened(log, self.url, now, "on")
        return conn

    def _measure_skew(self, conn: psycopg.Connection[Any]) -> None:
        before = self._clock()
        row = conn.execute("SELECT extract(epoch from clock_timestamp())::float8").fetchone()
        after = self._clock()
        assert row is not None
        self._skew = float(row[0]) - (before + after) / 2

    def _now(self) -> float:
        """Now, on the database server's clock."""
        return self._clock() + self._skew

    # -- the calls ---------------------------------------------------------------------------------
    def _add(self, op: _Op) -> _Op:
        with self._lock:
            if self._closing:
                raise StoreClosed(f"intake store {self.url} is closed")
            self._next[op.kind].append(op)
            self._size += 1
            if self._sleeping:
                self._sleeping = False
                self._wake.notify()
        return op

    def _call(self, kind: int, args: Any, timeout: float | None, until: float | None = None, extra: float = 0.0) -> Any:
        limit = (self.timeout if timeout is None else timeout) + extra
        op = self._add(_Op(kind, args, until, time.monotonic() + limit))
        return op.result(limit)

    def _row(self, payload: Any, key: str | None, idem: str | None, priority: int,
             run_at: float | None, max_attempts: int | None, now: float) -> tuple[Any, ...]:
        priority, run_at, max_attempts = checked_options(key, idem, priority, run_at, max_attempts)
        text, data = _encode(payload)
        checked_size(str(text) if data is None else data, self.max_payload_bytes)
        return (priority, now if run_at is None else run_at, key,
                self.max_attempts if max_attempts is None else max_attempts, now, idem, text, data)

    def submit(
        self, payload: Any, *, key: str | None = None, idempotency_key: str | None = None,
        priority: int = 0, run_at: float | None = None, max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> int:
        row = self._row(payload, key, idempotency_key, priority, run_at, max_attempts, self._now())
        ids: list[int] = self._call(_SUBMIT, [row], timeout)
        return ids[0]

    def submit_many(
        self, payloads: Iterable[Any], *, key: str | None = None, priority: int = 0,
        run_at: float | None = None, max_attempts: int | None = None, timeout: float | None = None,
    ) -> list[int]:
        now = self._now()
        rows = [
            self._row(p.payload, p.key, p.idempotency_key, p.priority, p.run_at, p.max_attempts, now)
            if type(p) is Submission else self._row(p, key, None, priority, run_at, max_attempts, now)
            for p in payloads
        ]
        if not rows:
            return []
        return list(self._call(_SUBMIT, rows, timeout))

    def enqueue(self, conn: psycopg.Connection[Any], payload: Any, *, key: str | None = None,
                idempotency_key: str | None = None, priority: int = 0, run_at: float | None = None,
                max_attempts: int | None = None) -> int:
        """:func:`enqueue` into this store's schema, on the caller's connection and transaction."""
        return enqueue(conn, payload, schema=self.schema, key=key, idempotency_key=idempotency_key,
                       priority=priority, run_at=run_at,
                       max_attempts=self.max_attempts if max_attempts is None else max_attempts)

    def claim(self, node: str, n: int, lease: float = 30.0, *, wait: float = 0.0, start: int = 0,
              timeout: float | None = None) -> list[Job]:
        n, lease, wait = checked_count("n", n), checked_seconds("lease", lease), checked_seconds("wait", wait)
        start = checked_count("start", start)
        if n <= 0:
            return []
        until = time.monotonic() + wait if wait > 0 else None
        rows, token, lease_until = self._call(_CLAIM, (checked_node(node), n, lease, start), timeout, until, wait) \
            or ((), 0, 0.0)
        if not rows:
            return []
        ordered = sorted(rows, key=lambda r: (-r[3], r[7], r[0]))
        try:
            return [Job(r[0], _decode(r[8], r[9]), r[1], r[2], r[3], r[4], token, node, lease_until, r[5], r[6])
                    for r in ordered]
        except ValueError:
            return self._without_unreadable(ordered, token, node, lease_until)

    def _without_unreadable(self, rows: list[Any], token: int, node: str, lease_until: float) -> list[Job]:
        """The claimed jobs whose stored payload decodes; each one that does not (a row written by
        another program, or damaged) is dead-lettered unread (:data:`UNREADABLE_PAYLOAD`), so it
        holds up neither this claim's other jobs nor any later claim."""
        jobs, unreadable = [], []
        for r in rows:
            try:
                payload = _decode(r[8], r[9])
            except ValueError:
                unreadable.append(Job(r[0], r[8], r[1], r[2], r[3], r[4], token, node, lease_until, r[5], r[6]))
                continue
            jobs.append(Job(r[0], payload, r[1], r[2], r[3], r[4], token, node, lease_until, r[5], r[6]))
        for job in unreadable:
            self.fail(job, UNREADABLE_PAYLOAD, dead=True)  # the future is not waited for: the store commits it
        logs.intake_payloads_unreadable(log, self.url, len(unreadable),
                                        "job(s) " + ", ".join(str(j.id) for j in unreadable))
        return jobs

    def renew(self, node: str, lease: float = 30.0, *, exclude: Iterable[int] = (),
              timeout: float | None = None) -> int:
        args = (checked_node(node), checked_seconds("lease", lease), [checked_id("exclude", i) for i in exclude])
        count: int = self._call(_RENEW, args, timeout)
        return count

    def start(self, jobs: Iterable[Job]) -> _Op:  # the future: result() -> int
        """Mark claimed jobs as started (see the protocol); the future says how many were."""
        return self._add(_Op(_START, checked_triples(jobs)))

    def ack(self, job: Job) -> _Op:  # the future: result() -> bool
        return self._add(_Op(_ACK, checked_triples((job,))[0]))

    def ack_many(self, jobs: Iterable[Job]) -> _Op:  # the future: result() -> list of the fenced ids
        op = _Op(_ACK, checked_triples(jobs))
        if not op.args:
            op.answer([])
            return op
        return self._add(op)

    def fail(self, job: Job, error: str, *, retry_in: float | None = None, dead: bool = False) -> _Op:
        retry_in = None if retry_in is None else checked_seconds("retry_in", retry_in)
        checked_triples((job,))
        return self._add(_Op(_FAIL, (job, one_line(error), retry_in, dead)))

    def complete(self, job: Job, work: Callable[[Any], T], *, timeout: float | None = None) -> T:
        """``work(connection)`` and the fenced ack of ``job`` in one transaction (see the protocol),
        on a connection of the calling thread's own, opened on first use and kept (an Intake with
        ``transactional=True`` holds one per worker). LeaseLost when the job is no longer held."""
        checked_triples((job,))
        limit = self.timeout if timeout is None else timeout
        if self._closing:
            raise StoreClosed(f"intake store {self.url} is closed")
        conn = self._own_connection(limit)
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {max(1, int(limit * 1000))}".encode())
                value = work(conn)
                ack = self._sql.get("ack_one") or _statements(conn, self.schema)["ack_one"]
                gone = conn.execute(ack, (job.id, job.token, job.node)).fetchone()
                if gone is None:  # not held under this claim: roll the work back
                    raise LeaseLost(f"intake store {self.url}: job {job.id} is no longer held by this claim (its "
                                    "lease ran out, or it was released); its work was rolled back")
        except LeaseLost:
            with self._lock:
                self._m["fenced"] += 1
            raise
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                self._forget_connection(conn)
            raise _error(exc, self.url, self._secret, committing=conn.broken) from None
        with self._lock:
            self._m["acked"] += 1
            self._churn += 1
        return value

    def _own_connection(self, timeout: float) -> psycopg.Connection[Any]:
        """The calling thread's connection for :meth:`complete` (autocommit outside its transactions)."""
        conn: psycopg.Connection[Any] | None = getattr(self._threads, "conn", None)
        if conn is None or conn.closed:
            conn = self._open(timeout)
            self._threads.conn = conn
            with self._lock:
                self._own.append(conn)
        return conn

    def _forget_connection(self, conn: psycopg.Connection[Any]) -> None:
        self._threads.conn = None
        with self._lock:
            if conn in self._own:
                self._own.remove(conn)
        conn.close()

    def release(self, jobs: Iterable[Job], *, timeout: float | None = None) -> int:
        items = checked_triples(jobs)
        if not items:
            return 0
        count: int = self._call(_RELEASE, items, timeout)
        return count

    def flush(self, timeout: float | None = None) -> None:
        self._call(_FLUSH, None, timeout)

    def requeue(self, job_id: int, *, timeout: float | None = None) -> None:
        self._call(_REQUEUE, checked_id("job id", job_id), timeout)

    def _read(self, fn: Callable[[psycopg.Cursor[Any], float], Any]) -> Any:
        """``fn(cursor, now)`` inside a tick's transaction (it may fetch: that waits for its rows)."""
        return self._call(_READ, fn, None)

    def dead(self, limit: int = 100) -> list[DeadJob]:
        limit = checked_count("limit", limit, 0)

        def read(cur: psycopg.Cursor[Any], now: float) -> list[DeadJob]:
            cur.execute(sql.SQL(
                "SELECT id, payload, payload_bytes, key, attempts, errors, submitted_at, died_at, idem_key "
                "FROM {}.dead ORDER BY died_at, id LIMIT %s").format(sql.Identifier(self.schema)), (limit,))
            return [DeadJob(r[0], _shown_payload(r[1], r[2]), r[3], r[4], _errors(r[5]), r[6], r[7], r[8])
                    for r in cur.fetchall()]
        result: list[DeadJob] = self._read(read)
        return result

    def jobs(self, state: str | None = None, limit: int = 100) -> list[JobInfo]:
        limit = checked_count("limit", limit, 0)
        if state not in (None, "ready", "delayed", "running"):
            raise InvalidArgument(f"no job state {state!r} (ready, delayed, running)")
        where = {None: "TRUE", "ready": "state = 0 AND run_at <= %(now)s", "delayed": "state = 0 AND run_at > %(now)s",
                 "running": "state = 1"}[state]

        def read(cur: psycopg.Cursor[Any], now: float) -> list[JobInfo]:
            cur.execute(sql.SQL(
                "SELECT id, state, key, priority, attempts, run_at, submitted_at, owner, lease_until, "
                "errors -> -1 ->> 2, payload, payload_bytes FROM {}.jobs WHERE " + where
                + " ORDER BY state DESC, priority DESC, run_at, id LIMIT %(limit)s").format(sql.Identifier(self.schema)),
                {"now": now, "limit": limit})
            return [JobInfo(r[0], "running" if r[1] == 1 else ("ready" if r[5] <= now else "delayed"), r[2], r[3],
                            r[4], r[5], r[6], r[7], r[8], r[9], _shown_payload(r[10], r[11])) for r in cur.fetchall()]
        result: list[JobInfo] = self._read(read)
        return result

    def stats(self) -> Stats:
        def read(cur: psycopg.Cursor[Any], now: float) -> Stats:
            s = sql.Identifier(self.schema)
            cur.execute(sql.SQL(
                "SELECT count(*) FILTER (WHERE state = 0 AND run_at <= %(now)s), count(*) FILTER (WHERE state = 1), "
                "count(*) FILTER (WHERE state = 0 AND run_at > %(now)s), "
                "min(greatest(run_at, submitted_at)) FILTER (WHERE state = 0 AND run_at <= %(now)s), "
                "(SELECT count(*) FROM {}.dead) FROM {}.jobs").format(s, s), {"now": now})
            row = cur.fetchone()
            assert row is not None
            ready, running, delayed, oldest, dead = row
            return Stats(ready, running, delayed, dead, None if oldest is None else max(0.0, now - oldest))
        result: Stats = self._read(read)
        return result

    def metrics(self) -> StoreMetrics:
        m = self._m
        return StoreMetrics(m["commits"], m["committed_ops"], m["last_batch"], m["submitted"], m["acked"],
                            m["failed"], m["dead_lettered"], m["rescued"], m["fenced"], self._commit_seconds, None)

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            first = not self._closing
            self._closing = True
            self._wake.notify()
        self._vacuum_due.set()  # the vacuum thread sees the close
        self._thread.join(self.timeout if timeout is None else timeout)
        with self._lock:
            own, self._own = self._own, []
        for conn in own:  # complete()'s, one per thread that called it
            conn.close()
        # The listener sees the close within its 0.2 s wait and closes its own connection: it
        # holds no work, so nobody waits for it.
        if first and not self._thread.is_alive():
            logs.intake_store_closed(log, self.url)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the listener ------------------------------------------------------------------------------
    def _listen_loop(self) -> None:
        """LISTEN on the schema's channel with a connection of its own; each notification (many in a
        burst count once) wakes the store thread's waiting claims. Reconnects with a growing pause;
        meanwhile the claims poll."""
        failures = 0
        pause = threading.Event()  # set by nothing: a bounded wait between tries
        while not self._closing:
            conn = None
            try:
                conn = self._open(min(self.timeout, 5.0))
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(_channel(self.schema))))
                failures = 0
                self._poke()  # something may have been submitted while nobody listened
                while not self._closing:
                    for _ in conn.notifies(timeout=0.2):
                        self._poke()
            except StoreError:
                failures += 1
            except psycopg.Error:
                failures += 1
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
            if not self._closing:
                pause.wait(backoff(failures, base=0.2, cap=5.0))

    def _vacuum_loop(self) -> None:
        """Vacuum the hot table after every ``vacuum`` row versions this store made dead, on a
        connection of its own: a queue table churns faster than autovacuum looks (once a minute by
        default), and the claims step over every dead index entry until a vacuum removes it.
        ``SKIP_LOCKED``: when another node is vacuuming it, this one does not wait. A role that does
        not own the table cannot vacuum it (PostgreSQL says so in a notice; autovacuum still does)."""
        statement = sql.SQL("VACUUM (SKIP_LOCKED) {}.jobs").format(sql.Identifier(self.schema))
        failing: str | None = None
        while True:
            self._vacuum_due.wait()  # set when due, and by close()
            if self._closing:
                break
            self._vacuum_due.clear()
            try:
                # A connection per vacuum (seconds apart at the busiest): a process holds two
                # connections, its store thread's and its listener's, not three.
                with self._open(min(self.timeout, 5.0)) as conn:
                    conn.add_notice_handler(lambda diag: None)
                    conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}".encode())
                    conn.execute(statement)
                failing = None
            except (StoreError, psycopg.Error) as exc:
                reason = one_line(exc).replace(self._secret or "\0", "***")
                if reason != failing:
                    logs.intake_vacuum_failed(log, self.url, reason)
                    failing = reason

    def _poke(self) -> None:
        with self._lock:
            self._notified = True
            if self._sleeping and self._waiting:
                self._sleeping = False
                self._wake.notify()

    # -- the store thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the store thread must never die silently
            logs.intake_store_crashed(log, self.url, exc_info=exc)
            self._abandon(StoreError(f"intake store {self.url}: its store thread died: {one_line(exc)}"))
        finally:
            if self._conn is not None:
                try:
                    self._conn.close()
                except psycopg.Error as exc:
                    logs.intake_store_close_failed(log, self.url, one_line(exc))

    def _loop(self) -> None:
        last_reap = last_prune = last_skew = time.monotonic()
        last_poll = 0.0
        closing_since: float | None = None
        retry_at = 0.0
        failures = 0
        while True:
            now = time.monotonic()
            wait_for = 1.0
            if self._waiting:
                wait_for = min(wait_for, max(0.0, last_poll + self._poll - now),
                               *(max(0.0, op.until - now) for op in self._waiting if op.until))
            if self._carried or self._lost or self._conn is None:
                wait_for = min(wait_for, max(0.0, retry_at - now))
            with self._lock:
                if not self._size and not self._closing and wait_for > 0 and not (self._notified and self._waiting):
                    self._sleeping = True
                    self._wake.wait(wait_for)
                    self._sleeping = False
                by_kind, size = self._next, self._size
                self._next, self._size = [[] for _ in range(_KINDS)], 0
                closing = self._closing
                notified, self._notified = self._notified, False
            now = time.monotonic()
            extra: list[_Op] = []
            if self._carried and (now >= retry_at or closing):
                extra += self._carried
                self._carried = []
            expired = [op for op in self._waiting if op.until is not None and op.until <= now]
            if expired:
                self._waiting = [op for op in self._waiting if op not in expired]
                for op in expired:
                    op.answer(None)
            if self._waiting:
                look = size or extra or notified or closing
                if not look and now - last_poll >= self._poll:
                    last_poll = now
                    look = self._work_visible()
                if look:
                    extra += self._waiting
                    self._waiting = []
            for op in extra:
                by_kind[op.kind].append(op)
            size += len(extra)
            reap = bool(by_kind[_CLAIM]) and now - last_reap >= self._reap_interval
            if size or (self._lost and (now >= retry_at or closing)):
                self._inflight = by_kind
                if self._tick(by_kind, size, reap):
                    failures = 0
                    last_reap = now if reap else last_reap
                else:
                    failures += 1
                    retry_at = now + backoff(failures, base=0.1, cap=5.0)
                self._inflight = []
            if self._conn is not None and now - last_prune >= 60.0:
                last_prune = now
                self._prune()
            if self._conn is not None and now - last_skew >= 60.0:
                last_skew = now
                try:
                    self._measure_skew(self._conn)
                except psycopg.Error:
                    self._drop()
            if closing:
                closing_since = now if closing_since is None else closing_since
                with self._lock:
                    pending = bool(self._size)
                # what an unreachable database keeps from being written is retried for one timeout
                if not pending and not self._waiting and (not self._carried or now - closing_since > self.timeout):
                    break
        if self._carried:
            logs.intake_store_unwritten(log, self.url, len(self._carried), self._failing or "closed")
            self._abandon(StoreClosed(f"intake store {self.url} closed before it could write"), self._carried)

    def _abandon(self, error: BaseException, ops: list[_Op] | None = None) -> None:
        with self._lock:
            self._closing = True
            todo = [*(ops or []), *(op for kind in self._inflight for op in kind),
                    *(op for kind in self._next for op in kind), *self._carried, *self._waiting]
            self._next, self._size = [[] for _ in range(_KINDS)], 0
        self._vacuum_due.set()
        for op in todo:
            op.answer(error=error)

    def _drop(self) -> None:
        """Forget a broken connection: the next tick connects again."""
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _work_visible(self) -> bool:
        """A cheap read: is there a ready job, or a lapsed lease to take back, for a waiting claim?"""
        if self._conn is None:
            return True
        try:
            row = self._conn.execute(self._sql["visible"], {"now": self._now()}).fetchone()
        except psycopg.Error:
            return True  # let the tick meet (and report) the error
        return bool(row and row[0])

    def _tick(self, by_kind: list[list[_Op]], size: int, reap: bool) -> bool:
        """One transaction for the operations ``by_kind``; True when it committed. Answers every
        operation that has its answer.

        The statements go out in pipeline mode: BEGIN, every statement and COMMIT in one round trip
        (their results are read once the commit is in), so a tick costs the server's work and one
        wait, not one wait per statement. Only what needs an answer before the next statement
        (an idempotency key, a read) waits inside the transaction."""
        started = time.perf_counter()
        answers: list[tuple[_Op, Any]] = []
        later: list[Callable[[], None]] = []  # read the results, once committed
        waiting: list[_Op] = []
        counts = dict(submitted=0, acked=0, failed=0, dead_lettered=0, rescued=0, fenced=0)
        late: list[tuple[int, str]] = []
        lapsed: list[tuple[int, str, int, bool]] = []
        tokens: list[int] = []  # this tick's claims: lost with it if it fails
        lost = list(self._lost)
        released: list[int] = []
        committing = False
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn, q = self._conn, self._sql
            with conn.pipeline(), conn.transaction():
                now = self._now()
                # A caller in a hurry: no statement outlives its wait (a caller already gone does
                # not count: its answer no longer matters, the others' still do).
                at = time.monotonic()
                deadlines = [op.deadline for ops in by_kind for op in ops if op.deadline is not None and op.deadline > at]
                if deadlines:
                    left = min(deadlines) - at
                    if left < self.timeout:
                        conn.execute(b"SELECT set_config('statement_timeout', %s, true)",
                                     (str(max(100, int(left * 1000))),))
                if lost:
                    gave_back = conn.execute(q["release_lost"], (_ints(lost),))
                    later.append(lambda: released.append(gave_back.rowcount))
                if by_kind[_SUBMIT]:
                    self._apply_submits(conn, by_kind[_SUBMIT], answers, later, counts)
                for op in by_kind[_RELEASE]:
                    cur = conn.execute(q["release"], _fenced(op.args))
                    later.append(_count_into(answers, op, cur))
                if by_kind[_START]:
                    self._apply_starts(conn, by_kind[_START], answers, later)
                if by_kind[_ACK]:
                    self._apply_acks(conn, by_kind[_ACK], answers, later, counts, late)
                if by_kind[_FAIL]:
                    self._apply_fails(conn, by_kind[_FAIL], now, answers, later, counts, late)
                for op in by_kind[_RENEW]:
                    node, lease, exclude = op.args
                    cur = conn.execute(q["renew"], (now + lease, node, _ints(exclude)))
                    later.append(_count_into(answers, op, cur))
                for op in by_kind[_REQUEUE]:
                    conn.execute(q["requeue_key"], (op.args,))
                    cur = conn.execute(q["requeue"], (op.args, now))

                    def requeued(op: _Op = op, cur: psycopg.Cursor[Any] = cur) -> None:
                        missing = cur.fetchone() is None
                        answers.append((op, UnknownJob(f"no dead job {op.args} in intake store {self.url}")
                                        if missing else None))
                    later.append(requeued)
                for op in by_kind[_READ]:
                    answers.append((op, op.args(conn.cursor(), now)))
                if by_kind[_CLAIM]:
                    if reap:
                        cur = conn.execute(q["reap"], {"now": now, "keep": ERROR_HISTORY})

                        def reaped(cur: psycopg.Cursor[Any] = cur) -> None:
                            lapsed.extend((r[0], r[1], r[2], r[4]) for r in cur.fetchall())
                            counts["rescued"] += len(lapsed)
                            counts["dead_lettered"] += sum(1 for r in lapsed if r[3])
                        later.append(reaped)
                    for op in by_kind[_CLAIM]:
                        node, n, lease, start = op.args
                        token = self._random.getrandbits(63)
                        tokens.append(token)
                        until = now + lease
                        cur = conn.execute(q["claim"], {"now": now, "n": n, "node": node, "token": token,
                                                        "until": until, "start": start})

                        def claimed(op: _Op = op, cur: psycopg.Cursor[Any] = cur, token: int = token,
                                    until: float = until) -> None:
                            rows = cur.fetchall()
                            if rows or op.until is None or self._closing:
                                answers.append((op, (rows, token, until)))
                            else:
                                waiting.append(op)  # it claimed nothing: it waits for work
                        later.append(claimed)
                for op in by_kind[_FLUSH]:
                    answers.append((op, None))
                committing = True
            for read in later:
                read()
        except psycopg.Error as exc:
            # An error the server reported (it has a SQLSTATE) rolled the transaction back
            # (pipelined, it surfaces at the COMMIT); a connection lost once the COMMIT was sent
            # leaves the outcome unknown — the claims too: their jobs are given back next tick.
            self._lost += tokens
            self._write_failed(by_kind, exc, committing and exc.sqlstate is None)
            return False
        except StoreError as exc:  # connecting again failed
            self._lost += tokens
            self._write_failed(by_kind, exc, False)
            return False
        if lost:
            self._lost = self._lost[len(lost):]
            if released and released[0]:
                logs.intake_lost_claims_released(log, self.url, released[0])
        elapsed = time.perf_counter() - started
        m = self._m  # counted before the callers hear: what they read next includes their tick
        m["commits"] += 1
        m["committed_ops"] += size
        m["last_batch"] = size
        for name, n in counts.items():
            m[name] += n
        self._commit_seconds += elapsed
        if self._vacuum_rows:
            # Each claim, start mark, ack, fail and rescue leaves a dead row version behind.
            self._churn += size + counts["rescued"]
            if self._churn >= self._vacuum_rows:
                self._churn = 0
                self._vacuum_due.set()
        self._waiting.extend(waiting)
        for op, value in answers:
            if isinstance(value, UnknownJob):
                op.answer(error=value)
            else:
                op.answer(value)
        for job_id, what in late:
            logs.intake_late_completion(log, self.url, job_id, what, "this node")
        for job_id, owner, attempts, bury in lapsed:
            if bury:
                logs.intake_lease_dead(log, self.url, job_id, attempts, owner)
        if lapsed:
            logs.intake_leases_lapsed(log, self.url, len(lapsed), ", ".join(sorted({r[1] or "?" for r in lapsed})))
        if self._failing is not None:
            logs.intake_store_writable(log, self.url)
            self._failing = None
        return True

    def _write_failed(self, by_kind: list[list[_Op]], exc: BaseException, committing: bool) -> None:
        error = exc if isinstance(exc, StoreError) else _error(exc, self.url, self._secret, committing=committing)
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self._drop()
        ops = [op for ops in by_kind for op in ops]
        carried = [op for op in ops if op.kind not in _ANSWERED_ON_ERROR]
        answered = [op for op in ops if op.kind in _ANSWERED_ON_ERROR]
        reason = str(error)
        if self._failing != reason:
            logs.intake_store_write_failed(log, self.url, reason, len(answered), len(carried))
            self._failing = reason
        for op in answered:
            op.answer(error=error)
        self._carried = carried + self._carried

    def _apply_submits(self, conn: psycopg.Connection[Any], ops: list[_Op], answers: list[tuple[_Op, Any]],
                       later: list[Callable[[], None]], counts: dict[str, int]) -> None:
        """Insert every submit of the tick: the keys' advisory locks first (so a key's ids follow its
        commits), then the rows without idempotency keys, from every call, in one INSERT; a call
        with idempotency keys goes row by row (each waits for its answer)."""
        q = self._sql
        keys = sorted({r[2] for op in ops for r in op.args if r[2] is not None})
        if keys:
            conn.execute(q["lock_keys"], (f"{_LOCK_PREFIX}{self.schema}:", _texts(keys)))
        plain: list[tuple[Any, ...]] = []
        numbered: list[tuple[_Op, int, int]] = []
        keyed: list[_Op] = []
        for op in ops:
            if any(r[5] is not None for r in op.args):
                keyed.append(op)
            else:
                numbered.append((op, len(plain), len(op.args)))
                plain.extend(op.args)
        inserted = 0
        if plain:
            cur = conn.execute(q["insert"], _rows(plain))

            def numbers(cur: psycopg.Cursor[Any] = cur) -> None:
                ids = sorted(r[0] for r in cur.fetchall())
                for op, at, n in numbered:
                    answers.append((op, ids[at:at + n]))
            later.append(numbers)
            inserted += len(plain)
        for op in keyed:
            got = []
            for r in op.args:
                idem = r[5]
                if idem is not None:
                    row = conn.execute(q["idem_take"], (idem, r[4])).fetchone()
                    if row is None:
                        found = conn.execute(q["idem_get"], (idem,)).fetchone()
                        assert found is not None
                        got.append(found[0])
                        continue
                    job_id = row[0]
                    conn.execute(q["insert_one"], (job_id, *r))
                else:
                    job_id = conn.execute(q["insert"], _rows([r])).fetchone()[0]  # type: ignore[index]
                got.append(job_id)
                inserted += 1
            answers.append((op, got))
        if inserted:
            conn.execute(q["notify"], (_channel(self.schema),))
        counts["submitted"] += inserted

    def _apply_starts(self, conn: psycopg.Connection[Any], ops: list[_Op], answers: list[tuple[_Op, Any]],
                      later: list[Callable[[], None]]) -> None:
        items = [item for op in ops for item in op.args]
        if not items:
            answers.extend((op, 0) for op in ops)
            return
        cur = conn.execute(self._sql["start"], _fenced(items))

        def marked() -> None:
            done = {r[0] for r in cur.fetchall()}
            answers.extend((op, sum(1 for item in op.args if item[0] in done)) for op in ops)
        later.append(marked)

    def _apply_acks(self, conn: psycopg.Connection[Any], ops: list[_Op], answers: list[tuple[_Op, Any]],
                    later: list[Callable[[], None]], counts: dict[str, int], late: list[tuple[int, str]]) -> None:
        # an operation holds one job (``ack``: a tuple) or a worker round's (``ack_many``: a list)
        items = [item for op in ops for item in (op.args if type(op.args) is list else (op.args,))]
        cur = conn.execute(self._sql["ack"], _fenced(items))

        def acked() -> None:
            done = {r[0] for r in cur.fetchall()}
            for op in ops:
                if type(op.args) is list:
                    missed = [item[0] for item in op.args if item[0] not in done]
                    answers.append((op, missed))
                else:
                    missed = [] if op.args[0] in done else [op.args[0]]
                    answers.append((op, not missed))
                late.extend((job_id, "ack") for job_id in missed)
            counts["acked"] += len(done)
            counts["fenced"] += len(items) - len(done)
        later.append(acked)

    def _apply_fails(self, conn: psycopg.Connection[Any], ops: list[_Op], now: float,
                     answers: list[tuple[_Op, Any]], later: list[Callable[[], None]], counts: dict[str, int],
                     late: list[tuple[int, str]]) -> None:
        jobs = [op.args[0] for op in ops]
        cur = conn.execute(self._sql["fail"], {
            "id": _ints(j.id for j in jobs), "token": _ints(j.token for j in jobs), "node": _texts(j.node for j in jobs),
            "error": _texts(op.args[1] for op in ops),
            "delay": _floats(None if op.args[2] is None else max(0.0, float(op.args[2])) for op in ops),
            "dead": _bools(bool(op.args[3]) for op in ops), "jitter": _floats(0.5 + self._random.random() for _ in ops),
            "now": now, "keep": ERROR_HISTORY})

        def failed() -> None:
            outcome = {r[0]: ("dead" if r[1] else "retry") for r in cur.fetchall()}
            for op in ops:
                what = outcome.get(op.args[0].id, "fenced")
                answers.append((op, what))
                if what == "fenced":
                    late.append((op.args[0].id, "fail"))
                    counts["fenced"] += 1
                else:
                    counts["failed"] += 1
                    counts["dead_lettered"] += what == "dead"
        later.append(failed)

    def _prune(self) -> None:
        """Forget the idempotency keys of jobs done (or dead) longer than the retention."""
        assert self._conn is not None
        try:
            self._conn.execute(self._sql["prune"], (self._now() - self._retention,))
        except psycopg.Error as exc:
            logs.intake_prune_failed(log, self.url, _error(exc, self.url, self._secret))
            if self._conn.broken:
                self._drop()


def migrate_url(parsed: StoreURL, **options: Any) -> tuple[int, int]:
    """``servicehost jobs NAME migrate`` on PostgreSQL: create or migrate the schema the URL names;
    ``(version before, version now)``."""
    libpq, ours = _split_url(parsed)
    url = redact(parsed.url)
    schema = _check_schema_name(str(options.get("schema", ours.get("schema", "servicehost"))), url)
    try:
        conn = psycopg.connect(libpq, autocommit=True, connect_timeout=10,
                               application_name=f"servicehost-migrate-{socket.gethostname()}"[:63])
    except psycopg.Error as exc:
        raise _error(exc, url, _password(libpq)) from None
    try:
        before, now = migrate(conn, schema)
    except SchemaError as exc:
        raise SchemaError(f"intake store {url}: {exc}") from None
    except psycopg.Error as exc:
        raise _error(exc, url, _password(libpq)) from None
    finally:
        conn.close()
    if before != now:
        logs.intake_store_migrated(log, url, before, now)
    return before, now
