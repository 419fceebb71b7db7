"""The Store contract: what the durable intake asks of a database, whatever the database.

The :class:`Store` protocol is the one door between the intake (``intake/component.py``) and a
database: SQLite here (``intake/sqlite.py``, embedded, one file), PostgreSQL next. Every store
passes one contract suite, ``tests/intake/test_store_contract.py``. This module also holds the
records a store returns (:class:`Job`, :class:`DeadJob`, :class:`JobInfo`, :class:`Stats`,
:class:`StoreMetrics`), what a submit may carry (:class:`Submission`), the errors
(:class:`StoreError` and its kinds), store URLs (:func:`parse_url`, :func:`redact`, which every
message that names a URL goes through) and :func:`open_store`, which picks a store by URL scheme.

The contract, in short (each method's docstring says more):

* **Durable submit.** ``submit``/``submit_many`` return only after the commit that holds the job
  (fsync'd). An idempotency key makes a second submit return the first job's id, for as long as
  the store keeps the key (``idempotency_retention``, after the job is done too).
* **Claims with leases.** ``claim(node, n, lease)`` hands out up to ``n`` ready jobs, counts the
  attempt *at claim* (so a job that kills its process dies after ``max_attempts``), gives each a
  fresh ``token`` and a lease ``lease`` seconds long. Order: higher ``priority`` first, then
  ``run_at``, then submit order. Jobs sharing a ``key`` never run at the same time and run in
  submit order (the key's oldest live job blocks the others, delayed or retrying included).
  A claim also takes back the jobs whose lease ran out (a node that died): they become ready
  again, or dead when their attempts are spent.
* **Fenced completion.** ``ack``/``fail``/``release`` act only on a job still running under the
  token it was claimed with; a node that lost its lease gets ``False``/``"fenced"`` and changes
  nothing. ``renew(node, lease)`` extends every lease the node holds (from its heartbeats).
* **Retries.** ``fail`` re-queues with ``retry_in`` seconds of delay (default:
  :func:`backoff`, exponential with jitter); after ``max_attempts`` the job goes to the dead-letter
  table with its error history; ``requeue(id)`` brings it back with its attempts reset.
* **Payloads** are any JSON value (dict keys are strings; no NaN) or ``bytes``, returned as given.

Times in a store are wall-clock seconds (``time.time()``): several processes, and later several
machines, share them. Log events for the intake are 7xxx in ``logs.py`` (7001-7049: stores).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import random
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from ..config import redact_url
from ..errors import ServiceHostError, describe_error

DEFAULT_LEASE = 30.0
"""Seconds a claim holds a job before another node may take it back (renewed by heartbeats)."""
DEFAULT_MAX_ATTEMPTS = 10
"""Claims a job gets before it is dead-lettered (a claim counts, whether the handler ends or not)."""
DEFAULT_TIMEOUT = 30.0
"""Seconds a blocking store call waits for its commit before it raises :class:`StoreTimeout`."""
T = TypeVar("T")
ERROR_HISTORY = 10
"""How many of a job's last errors the store keeps (the dead-letter table shows them)."""


# -- records ---------------------------------------------------------------------------------------
class Job(NamedTuple):
    """One claimed job, as a handler sees it. Immutable; ``token`` fences its completion."""

    id: int
    payload: Any
    """The JSON value or bytes that was submitted."""
    attempt: int
    """1 on the first claim; counted at claim, so a claim whose process died counts too."""
    key: str | None
    """Jobs sharing a key never run at the same time, and run in submit order."""
    priority: int
    max_attempts: int
    token: int
    """This claim's fence: ``ack``/``fail``/``release`` act only while the job still runs under it."""
    node: str
    """The node that claimed it."""
    lease_until: float
    """Wall-clock time the lease ran to when claimed (``renew`` extends it in the store)."""
    submitted_at: float
    idempotency_key: str | None = None


class Submission(NamedTuple):
    """A submit with its options, for ``submit_many`` items that differ (a bare payload there takes
    the call's options)."""

    payload: Any
    key: str | None = None
    idempotency_key: str | None = None
    priority: int = 0
    run_at: float | None = None
    max_attempts: int | None = None


class ErrorRecord(NamedTuple):
    """One failed attempt: when, which, and the error on one line."""

    at: float
    attempt: int
    error: str


class DeadJob(NamedTuple):
    """A job whose attempts are spent (or that failed for good), with its error history."""

    id: int
    payload: Any
    key: str | None
    attempts: int
    errors: tuple[ErrorRecord, ...]
    submitted_at: float
    died_at: float
    idempotency_key: str | None = None


class JobInfo(NamedTuple):
    """A live job as ``servicehost jobs NAME list`` shows it."""

    id: int
    state: str
    """``ready``, ``delayed`` or ``running``."""
    key: str | None
    priority: int
    attempts: int
    run_at: float
    submitted_at: float
    node: str | None
    lease_until: float | None
    last_error: str | None
    payload: Any


class Stats(NamedTuple):
    """How much work a store holds (``servicehost jobs NAME stats``)."""

    ready: int
    """Ready to run now."""
    running: int
    """Claimed, lease not yet taken back."""
    delayed: int
    """Waiting for their ``run_at`` (a retry's backoff included)."""
    dead: int
    """In the dead-letter table."""
    oldest_ready_age: float | None
    """Seconds the longest-waiting ready job has been ready (None: none ready)."""


class StoreMetrics(NamedTuple):
    """A store's own counters since it was opened in this process (for the component counters and
    the metrics)."""

    commits: int
    """Transactions committed (each holds a whole tick: submits, acks, renewals, a claim)."""
    committed_ops: int
    """Operations those commits held: their sum over ``commits`` is the mean batch size."""
    last_batch: int
    submitted: int
    acked: int
    failed: int
    dead_lettered: int
    rescued: int
    """Jobs taken back from a lease that ran out."""
    fenced: int
    """Acks, fails or releases that came too late (the job's lease was lost) and did nothing."""
    commit_seconds: float
    """Time spent committing (the mean commit latency is this over ``commits``)."""
    log_bytes: int | None = None
    """Size of the write-ahead log now (SQLite's -wal file), where there is one."""


# -- errors ----------------------------------------------------------------------------------------
class StoreError(ServiceHostError):
    """A store could not do what it was asked. The message never holds a password."""


class InvalidArgument(StoreError, ValueError):
    """An argument or an option the store refused, on the caller's thread, before anything was
    done: a bad priority, key, node, count, time, job, URL or store option (the message names it).
    The command line answers it with exit 2 (``CONFIG_ERROR``), as any bad option."""


class StoreUnavailable(StoreError):
    """The database cannot be opened or written: a missing directory, no permission, a read-only
    file, a disk that is full. Nothing of the failed call was written; the same call may succeed
    once the cause is gone (the store keeps running)."""


class NoStoreYet(StoreUnavailable):
    """An embedded store opened with ``create=False`` whose file does not exist: nothing was ever
    stored there, and nothing was made (``servicehost jobs`` looks this way)."""


class StoreFull(StoreUnavailable):
    """The disk (or the database's size limit) is full: nothing of the call was written; retry
    when space is back."""


class StoreClosed(StoreError):
    """The store was closed (or is closing): no call is taken any more."""


class StoreTimeout(StoreError):
    """A blocking call did not commit before its timeout (another process holds the database, or
    the disk is slow); it may still commit later."""


class SchemaError(StoreError):
    """The database's schema is not one this version can use (newer, or not a servicehost store)."""


class PayloadError(StoreError, ValueError):
    """A payload is neither a JSON value nor bytes."""


class UnknownJob(StoreError, LookupError):
    """No job (or dead job) has that id."""


class LeaseLost(StoreError):
    """A :meth:`Store.complete` found its job no longer held under its claim (the lease ran out and
    it was taken back, or it was released): the transaction was rolled back, so the work's writes
    never landed. Another claim runs the job; nothing is to be done here."""


# -- retries ---------------------------------------------------------------------------------------
def backoff(attempt: int, *, base: float = 1.0, cap: float = 3600.0, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt`` (1 after the first failure): ``base * 2**(attempt-1)``
    capped at ``cap``, times a jitter in [0.5, 1.5) so that jobs failing together do not come back
    together."""
    delay = min(cap, base * 2.0 ** max(0, min(attempt - 1, 60)))
    return delay * (0.5 + (rng or random).random())


# -- the protocol ----------------------------------------------------------------------------------
@runtime_checkable
class Store(Protocol):
    """A durable job store. Thread-safe: any thread may call any method. Blocking methods take a
    ``timeout`` (seconds, ``None``: the store's default) and raise :class:`StoreTimeout` past it;
    derive it from a :class:`~servicehost.stopping.Deadline` (``deadline.remaining()``)."""

    url: str
    """Where the store is, redacted (safe to log)."""

    def submit(
        self, payload: Any, *, key: str | None = None, idempotency_key: str | None = None,
        priority: int = 0, run_at: float | None = None, max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Add a job; return its id once the commit that holds it is durable. With an
        ``idempotency_key`` already known, add nothing and return that job's id. ``run_at``:
        wall-clock time before which it is not claimed. Raises PayloadError, StoreUnavailable
        (StoreFull), StoreClosed, StoreTimeout; on any of them nothing was added. The options are
        checked on the caller's thread, the same in every store (``checked_options``: priority
        and max_attempts 32-bit, run_at finite, keys Unicode text without NUL): InvalidArgument."""
        ...

    def submit_many(
        self, payloads: Iterable[Any], *, key: str | None = None, priority: int = 0,
        run_at: float | None = None, max_attempts: int | None = None, timeout: float | None = None,
    ) -> list[int]:
        """Add many jobs in one commit (all or none); the ids in order. An item that is a
        :class:`Submission` carries its own options; any other item is a payload with the call's."""
        ...

    def claim(self, node: str, n: int, lease: float = DEFAULT_LEASE, *, wait: float = 0.0, start: int = 0,
              timeout: float | None = None) -> list[Job]:
        """Take up to ``n`` ready jobs for ``node`` (committed before this returns): attempts + 1,
        a fresh token, ``lease`` seconds of lease. Waits up to ``wait`` seconds for a first job
        (a local submit wakes it at once; another process's within the store's poll interval).
        The jobs come in claim order (priority, highest first; then ``run_at``; then id), and the
        first ``start`` of them are marked started in the same commit, as :meth:`start` would
        mark them a commit later: a claimer that knows its workers will run them at once saves a
        round (their handlers may run as soon as this returns)."""
        ...

    def renew(self, node: str, lease: float = DEFAULT_LEASE, *, exclude: Iterable[int] = (),
              timeout: float | None = None) -> int:
        """Extend to now + ``lease`` the lease of every job ``node`` runs, except ``exclude`` (a
        hung handler's job, which should be taken back); how many were extended."""
        ...

    def ack(self, job: Job) -> Future[bool]:
        """The handler returned: the job is done (it leaves the hot table; its idempotency key is
        kept). Does not block: the future says, once committed, True, or False when fenced (the
        lease was lost and someone else may run it)."""
        ...

    def ack_many(self, jobs: Iterable[Job]) -> Future[list[int]]:
        """:meth:`ack` for several jobs in one operation (a worker round's). Does not block: the
        future gives, once committed, the ids of the jobs that were fenced (none: ``[]``)."""
        ...

    def start(self, jobs: Iterable[Job]) -> Future[int]:
        """Mark claimed jobs as started: their handlers may now run. Does not block: the future
        says, once committed, how many were marked (a job no longer held under its token is not).
        A claim counts the attempt, but a job whose lease runs out before it was marked gets that
        attempt back when it is taken back (ready again, no error kept, never dead-lettered for
        it), as a release would; a started one counts. Run a handler only once its job's mark has
        committed, so a job that kills its process always counts its attempt while the jobs
        claimed ahead of the workers do not."""
        ...

    def fail(self, job: Job, error: str, *, retry_in: float | None = None, dead: bool = False) -> Future[str]:
        """The handler raised: keep ``error`` (one line) in the job's history; ready again after
        ``retry_in`` seconds (``None``: :func:`backoff`), or dead when its attempts are spent or
        ``dead``. Does not block: the future says ``"retry"``, ``"dead"`` or ``"fenced"``."""
        ...

    def complete(self, job: Job, work: Callable[[Any], T], *, timeout: float | None = None) -> T:
        """Exactly-once completion: run ``work(connection)`` in ONE transaction on this store's own
        database that also acks ``job`` (fenced, as :meth:`ack`), and return what it returned.
        ``connection`` is the driver's (``sqlite3.Connection``, ``psycopg.Connection``), inside
        the transaction: write your results with it and they commit together with the ack, or not
        at all. If ``work`` raises, the transaction is rolled back and the exception propagates (the
        job stays held: fail it as usual). If the job is no longer held under its claim, the
        transaction is rolled back and :class:`LeaseLost` is raised. Blocks; ``timeout`` bounds
        the wait for the database (SQLite: its write lock, held while ``work`` runs: keep it short).
        Runs on the calling thread, on a connection of that thread's own."""

    def release(self, jobs: Iterable[Job], *, timeout: float | None = None) -> int:
        """Give back claimed jobs that did not start (a stop): ready again at once, the claim's
        attempt not counted. Blocks until committed; how many were released (fenced ones are not)."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything called before (acks and fails included) is committed."""
        ...

    def dead(self, limit: int = 100) -> list[DeadJob]:
        """The dead-letter table, oldest first."""
        ...

    def requeue(self, job_id: int, *, timeout: float | None = None) -> None:
        """Bring a dead job back, ready now, attempts reset (UnknownJob if it is not dead)."""
        ...

    def jobs(self, state: str | None = None, limit: int = 100) -> list[JobInfo]:
        """Live jobs (``ready``, ``delayed``, ``running``; ``None``: all), in claim order."""
        ...

    def stats(self) -> Stats:
        ...

    def metrics(self) -> StoreMetrics:
        ...

    def close(self, timeout: float | None = None) -> None:
        """Commit what is pending, then close. Idempotent. Later calls raise StoreClosed."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...


# -- helpers the stores share ----------------------------------------------------------------------
#: Priorities and attempt limits are 32-bit integers in every store (PostgreSQL's ``integer``).
INT32 = 1 << 31


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_options(key: Any, idempotency_key: Any, priority: Any, run_at: Any,
                    max_attempts: Any) -> tuple[int, float | None, int | None]:
    """A submit's options, checked on the caller's thread, the same way by every store:
    ``(priority, run_at, max_attempts)`` as the store keeps them; StoreError saying which option
    and why. A value the database refused would fail the whole group commit, and with it every
    other caller's operations in it (a number too big for SQLite even ended its store thread);
    a run_at of infinity would be a job that never runs."""
    if not _integer(priority) or not -INT32 <= priority < INT32:
        raise InvalidArgument(f"priority must be a 32-bit integer, not {_shown(priority)}")
    if max_attempts is not None and (not _integer(max_attempts) or not 1 <= max_attempts < INT32):
        raise InvalidArgument(f"max_attempts must be at least 1 (and below 2**31), not {_shown(max_attempts)}")
    if run_at is not None:
        if not isinstance(run_at, (int, float)) or isinstance(run_at, bool):
            raise InvalidArgument(f"run_at must be a time in seconds (a number), not {_shown(run_at)}")
        try:
            run_at = float(run_at)
        except OverflowError:
            run_at = float("inf")
        if not math.isfinite(run_at):
            raise InvalidArgument(f"run_at must be a finite time, not {_shown(run_at)}")
    for name, value in (("key", key), ("idempotency_key", idempotency_key)):
        if value is not None and not _plain_text(value, MAX_KEY_BYTES):
            raise InvalidArgument(f"{name} must be Unicode text of at most {MAX_KEY_BYTES} bytes (UTF-8), without NUL "
                                  f"characters, not {_shown(value)}")
    return int(priority), run_at, None if max_attempts is None else int(max_attempts)


#: Ids, counts and limits are 64-bit integers in every store.
INT64 = 1 << 63


def checked_count(name: str, value: Any, minimum: int = -INT64) -> int:
    """A count or limit (``claim``'s n, ``jobs``' limit): a 64-bit integer, ``minimum`` or more."""
    if not _integer(value) or not minimum <= value < INT64:
        raise InvalidArgument(f"{name} must be a whole number from {minimum} to 2**63 - 1, not {_shown(value)}"
                              if minimum > -INT64 else f"{name} must be a whole number below 2**63, not {_shown(value)}")
    return int(value)


def checked_id(name: str, value: Any) -> int:
    """A job id (``requeue``, ``renew``'s exclude): a positive 64-bit integer."""
    if not _integer(value) or not 0 < value < INT64:
        raise InvalidArgument(f"{name} must be a job id (a whole number from 1 to 2**63 - 1), not {_shown(value)}")
    return int(value)


def checked_seconds(name: str, value: Any) -> float:
    """A lease, a wait, a retry delay: a finite number of seconds, not negative."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise InvalidArgument(f"{name} must be a finite number of seconds, 0 or more, not {_shown(value)}")


def checked_store_options(url: str, seconds: Mapping[str, Any], whole: Mapping[str, tuple[Any, int, int]],
                          positive: Iterable[str] = ()) -> None:
    """A store's own options (its URL's query, or keywords), checked when it is opened, the same
    way by every store: ``seconds`` finite and not negative (more than 0 for the names in
    ``positive``), each of ``whole`` an integer in ``[low, high]``. A NaN timeout or poll, a
    checkpoint interval of 0 (a store thread that never sleeps), a mode beyond 0o777:
    InvalidArgument naming the store and the option."""
    for name, value in seconds.items():
        try:
            given = checked_seconds(name, value)
        except StoreError as exc:
            raise InvalidArgument(f"intake store {url}: {exc}") from None
        if name in positive and given <= 0:
            raise InvalidArgument(f"intake store {url}: {name} must be more than 0 seconds, not {_shown(value)}")
    for name, (value, low, high) in whole.items():
        if not _integer(value) or not low <= value <= high:
            octal = name.endswith("mode") and _integer(value)
            span = f"{low:#o} to {high:#o}" if octal else f"{low} to {high}"
            raise InvalidArgument(f"intake store {url}: {name} must be a whole number from {span}, "
                                  f"not {oct(value) if octal else _shown(value)}")


def checked_size(data: str | bytes, limit: int) -> None:
    """A payload (or a batch's one document) the store can bind, checked on the caller's thread:
    PayloadError past ``limit`` bytes (the store's ``max_payload_bytes``). Bound in a group
    commit, a value too big for the database failed the whole commit, every other caller's
    operations in it too, with an error that said to retry. O(1) for all but texts near the limit."""
    n = len(data)
    if (n * 4 if type(data) is str else n) <= limit:  # UTF-8 takes at most 4 bytes a character
        return
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else n
    if size > limit:
        raise PayloadError(f"a payload of {size} bytes is more than this store takes ({limit} bytes: its "
                           "max_payload_bytes option)")


def checked_node(node: Any) -> str:
    """A node id: Unicode text without NUL characters (:func:`_plain_text`)."""
    if not _plain_text(node, MAX_KEY_BYTES):
        raise InvalidArgument(f"node must be Unicode text of at most {MAX_KEY_BYTES} bytes (UTF-8), without NUL "
                              f"characters, not {_shown(node)}")
    return str(node)


#: Keys, idempotency keys and node ids are indexed: at most this many bytes (UTF-8) each, in every
#: store. A longer one failed PostgreSQL's index insert (a btree row holds 2704 bytes at most), and
#: with it the whole group commit: every other caller's operations in it too.
MAX_KEY_BYTES = 1024


def _plain_text(value: Any, limit: int | None = None) -> bool:
    """A string every store can keep as it is: no NUL (PostgreSQL's text cannot hold one),
    encodable as UTF-8 (a lone surrogate, ``"\\udcff"`` as ``os.fsdecode`` makes of an undecodable
    byte, is refused by SQLite and PostgreSQL alike when bound, and on SQLite's store thread it
    had ended the thread), and at most ``limit`` bytes of it when given."""
    if type(value) is not str or "\0" in value:
        return False
    if value.isascii():  # O(1) in CPython: the common case costs nothing more
        return limit is None or len(value) <= limit
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return limit is None or size <= limit


def checked_pairs(jobs: Iterable[Any]) -> list[tuple[int, int]]:
    """Claimed jobs' fences, ``(id, token)`` each, for ``ack``/``start``/``release``: a ``Job``
    made or altered by hand with an id or token no store holds is refused here, on the caller's
    thread (StoreError), not met on the store's, where one bad value would fail a whole commit."""
    try:
        pairs = [(job.id, job.token) for job in jobs]
    except AttributeError as exc:
        raise InvalidArgument(f"not a claimed job: {exc}") from None
    for job_id, token in pairs:  # one pass, no call a job: the acks' path
        if type(job_id) is not int or type(token) is not int or not (0 < job_id < INT64 and -INT64 <= token < INT64):
            raise InvalidArgument(f"not a claimed job: id {_shown(job_id)}, token {_shown(token)} (a job id is a whole "
                                  "number from 1 to 2**63 - 1, a token a 64-bit integer: pass the jobs claim returned)")
    return pairs


def checked_triples(jobs: Iterable[Any]) -> list[tuple[int, int, str]]:
    """:func:`checked_pairs` with each job's node (``(id, token, node)``), checked as ``node``."""
    jobs = list(jobs)
    pairs = checked_pairs(jobs)
    nodes = [job.node for job in jobs]  # each has id and token: a Job, or it would have been refused
    for node in nodes:
        if type(node) is not str or "\0" in node or not node.isascii() or len(node) > MAX_KEY_BYTES:
            checked_node(node)
    return [(job_id, token, node) for (job_id, token), node in zip(pairs, nodes)]


def _integer(value: Any) -> bool:
    """An int (an IntEnum too), not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON, UTF-8 kept (a string that UTF-8 cannot hold, with a lone surrogate, as JSON
    escapes: SQLite and PostgreSQL refuse such text, and ``json.loads`` gives the same string
    back), no NaN. The C encoder made once is 3x faster than ``json.dumps``
    (which makes one per call): it runs on every producer's thread for every job."""
    make = getattr(json.encoder, "c_make_encoder", None)
    plain: Callable[[Any], str]
    escaped: Callable[[Any], str]
    if make is None:  # not CPython: the pure-Python encoder
        plain = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
        escaped = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode
    else:
        # (markers: no circular check, a cycle ends in RecursionError; default; string encoder;
        #  indent; key separator; item separator; sort_keys; skipkeys; allow_nan)
        chunks = make(None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False)
        ascii_chunks = make(None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)

        plain = lambda value: "".join(chunks(value, 0))  # noqa: E731
        escaped = lambda value: "".join(ascii_chunks(value, 0))  # noqa: E731

    def encode(value: Any) -> str:
        text = plain(value)
        if text.isascii():  # O(1) in CPython: the common case costs nothing more
            return text
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: kept as its JSON escape, which decodes back to it
            return escaped(value)
        return text
    return encode


#: The error a job whose stored payload is not valid JSON (a row written by another program, or
#: damaged) is dead-lettered with, unread: on every store, a claim that meets one goes on without it.
UNREADABLE_PAYLOAD = ("the stored payload is not valid JSON (written outside servicehost, or damaged): "
                      "dead-lettered unread")

#: A payload as the stores keep it: compact JSON text (TypeError/ValueError: not a JSON value).
to_json = _json_encoder()


def periodic_key(name: str, tick: int) -> str:
    """The idempotency key that keeps a periodic job single across nodes: one job per (name, tick),
    however many schedulers submit it."""
    return f"periodic:{name}:{tick}"


def new_node_id() -> str:
    """A node id unique to this process and run: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def one_line(error: object, limit: int = 500) -> str:
    """An error as one line of at most ``limit`` characters (``Type: message``), as every store can
    keep it: NUL and what UTF-8 cannot hold (a lone surrogate, as a message naming an undecodable
    file name has) escaped as backslash sequences. An exception is described by
    :func:`~servicehost.errors.describe_error`, which never raises: a job's error must never end
    the worker that reports it."""
    text = describe_error(error, limit) if isinstance(error, BaseException) else " ".join(str(error).split())
    if not _plain_text(text):
        text = text.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- URLs ------------------------------------------------------------------------------------------
STORES: Mapping[str, str] = {
    "sqlite": "servicehost.intake.sqlite:SQLiteStore",
    "postgresql": "servicehost.intake.postgres:PostgresStore",
}
"""URL scheme → the store class (imported only when used). ``postgres://`` is ``postgresql://``."""
MIGRATORS: Mapping[str, str] = {
    "sqlite": "servicehost.intake.schema:migrate_url",
    "postgresql": "servicehost.intake.postgres:migrate_url",
}
"""URL scheme → what :func:`migrate_store` calls: ``(parsed URL, **options) -> (before, now)``."""
EXTRAS: Mapping[str, tuple[str, str]] = {"postgresql": ("psycopg", "postgres")}
"""URL scheme → (the module it needs, the servicehost extra that installs it)."""


class StoreURL(NamedTuple):
    """A parsed store URL. ``path`` for file stores; ``options`` from the query string."""

    scheme: str
    path: str
    options: Mapping[str, str]
    url: str
    """The URL as given (may hold a password: never log it; log :func:`redact` of it)."""


#: ``url`` with its password as ``***`` (``config.redact_url``, which every error of the CLI also
#: goes through): what every message, log line and ``Store.url`` shows of a store's URL.
redact = redact_url


def parse_url(url: str) -> StoreURL:
    """Split a store URL. ``sqlite:////abs/path.sqlite3`` (an absolute path: four slashes),
    ``sqlite:///relative.sqlite3``, or a bare file path (SQLite). Options go in the query string
    (``?synchronous=FULL&lease=30``). Raises StoreError naming the redacted URL."""
    if "://" not in url:
        if not url or url.startswith(("postgres:", "postgresql:")):
            raise InvalidArgument(f"not a store URL: {redact(url)!r}")
        return StoreURL("sqlite", url, {}, url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "postgres":
        scheme = "postgresql"
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "sqlite":
        if parts.netloc:
            raise InvalidArgument(f"a sqlite URL has no host: {redact(url)!r} (an absolute path is sqlite:////path)")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise InvalidArgument(f"a sqlite URL needs a file path: {redact(url)!r}")
        return StoreURL(scheme, path, options, url)
    return StoreURL(scheme, parts.path, options, url)


def known_store(url: str | os.PathLike[str]) -> StoreURL:
    """``url`` (or a SQLite file's path) parsed, naming a store that exists: InvalidArgument
    otherwise. Nothing is opened and no driver imported (``Intake(...)`` checks its store so)."""
    parsed = parse_url(os.fspath(url))
    if parsed.scheme not in STORES:
        known = ", ".join(sorted(STORES))
        raise InvalidArgument(f"no store for {parsed.scheme!r} URLs ({redact(parsed.url)!r}); known: {known}")
    return parsed


def _store_module(parsed: StoreURL) -> tuple[Any, str]:
    """The module of the store a parsed URL (:func:`known_store`) names, and its class name;
    StoreError naming the extra to install when the store's driver is missing."""
    module, _, name = STORES[parsed.scheme].partition(":")
    try:
        return importlib.import_module(module), name
    except ModuleNotFoundError as exc:
        needed, extra = EXTRAS.get(parsed.scheme, ("", ""))
        if not needed or (exc.name or "").partition(".")[0] != needed:
            raise
        raise StoreError(f"a {parsed.scheme} store needs {needed}, which is not installed: "
                         f"pip install 'servicehost[{extra}]'") from None


def open_store(url: str, **options: Any) -> Store:
    """Open the store a URL names (``sqlite:////var/lib/app/jobs.sqlite3``,
    ``postgresql://user@host/db?schema=servicehost``), creating its schema when needed (SQLite
    also migrates an older one; PostgreSQL leaves that to :func:`migrate_store`). ``options``
    override the URL's query options. Use it as a context manager, or ``close()`` it."""
    parsed = known_store(url)
    module, name = _store_module(parsed)
    store: Store = getattr(module, name).from_url(parsed, **options)
    return store


def migrate_store(url: str, **options: Any) -> tuple[int, int]:
    """Create or migrate the schema of the store a URL names, explicitly (``servicehost jobs NAME
    migrate``): ``(version found, version now)``; 0 found: there was none. A newer schema is
    refused (SchemaError), never altered."""
    parsed = known_store(url)
    _store_module(parsed)  # the driver is there
    module, _, name = MIGRATORS[parsed.scheme].partition(":")
    result: tuple[int, int] = getattr(importlib.import_module(module), name)(parsed, **options)
    return result
