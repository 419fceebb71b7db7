"""Intake: the durable intake component. Workers take jobs from a :class:`~.store.Store` (claimed
in batches, with leases), run the handler, and acknowledge; a service composes it like a pool::

    self.intake = self.use(Intake(self.handle, store=self.settings.store, workers=16))

Threads (all started by :meth:`Intake.start`, which ``Service.use`` calls):

* ``workers`` worker threads run the handler, one job at a time, taking jobs marked started from a
  local buffer. A handler that returns acks the job; one that raises fails it (a retry after an
  exponential backoff with jitter, or the dead-letter table once its attempts are spent).
* one claimer thread keeps ``workers + prefetch`` jobs held (claimed, not finished): each round it
  claims what is free and marks started (``store.start``) the claimed jobs the workers will take
  before its next round — about twice what they took in the last one, at least ``workers`` — and
  the store commits both in one tick. A worker runs a job only once its mark has committed.
* one renewer thread renews the leases of every job this node holds every ``lease / 3`` seconds,
  from the workers' heartbeats: a job whose handler has run longer than the intake's own
  ``hang_timeout`` is left out, so its lease runs out and another node (or this one, on a later
  claim) takes it back. The host's hang watch never fires for the intake (long jobs are normal):
  the host is not restarted for it.

Nothing in memory is the only copy: a stop (``close``) gives the claimed jobs that did not start
back to the store at once (``release``: ready again without waiting for a lease, the attempt not
counted); running handlers finish until the stop deadline and are acked; a job still running at
the deadline comes back when its lease runs out. ``kill -9`` loses nothing: every job not acked is
in the store, and its lease runs out. A claim counts an attempt, and a lapsed lease gives it back
to a job never marked started: so a job that kills its process is dead-lettered after
``max_attempts`` deaths (the intake's limit: a job claimed past it goes to the dead-letter table
without running), while the jobs merely claimed ahead of the workers are not charged for them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Self

from .. import logs
from ..components import Beat, Counters, Unfinished
from ..stopping import Deadline
from ..workers._supervision import LATENCY_SAMPLE_EVERY, Drains, WorkerStats, describe, sum_counters
from .store import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    Job,
    LeaseLost,
    Stats,
    Store,
    StoreClosed,
    StoreError,
    backoff,
    checked_count,
    checked_options,
    checked_seconds,
    known_store,
    new_node_id,
    one_line,
    open_store,
    periodic_key,
    to_json,
)

__all__ = ["Intake"]

log = logging.getLogger("servicehost.intake")


class _Schedule:
    """One :meth:`Intake.every`: its job's name, period and payload, and the last tick submitted."""

    __slots__ = ("name", "seconds", "payload", "key", "priority", "last")

    def __init__(self, name: str, seconds: float, payload: Any, key: str | None, priority: int) -> None:
        self.name, self.seconds, self.payload, self.key, self.priority = name, seconds, payload, key, priority
        self.last = -1
_monotonic = time.monotonic

#: Seconds one claim waits for a first job when none is ready (a local submit wakes it at once).
CLAIM_WAIT = 0.2
#: Longest wait before a failed store call is tried again (doubling from 0.1 s).
STORE_RETRY_CAP = 5.0
#: How long a read of the store's stats is reused by ``counters()`` (status is read often).
STATS_TTL = 1.0
#: Seconds between two reads of the committed acks' answers (counted, a late one logged).
SETTLE_EVERY = 0.25
#: One job in this many has its wait (submit to start) sampled.
WAIT_SAMPLE_EVERY = 16
#: The workers ack in rounds (``store.ack_many``): the jobs that ended are sent once this many
#: gathered, once the first of them waited ``ACK_DELAY`` seconds, or at once when no claimed job
#: is left to run (the renewer sends what a busy round left longer). An ack a job was the intake's
#: most frequent operation: an operation, a lock and an answer to read back for every job.
ACK_ROUND = 256
#: A worker whose last handler took less than ``RUN_SHORT`` seconds takes with its next job a run
#: of up to ``RUN_MAX`` more (a fair share of the ready ones: ``len // (workers + 1)``), run in order
#: without taking the shared lock again; a run's rest goes back to the others when one of them is
#: idle, and, from the renewer, when a job of the run has run ``RUN_PATIENCE`` seconds.
RUN_SHORT = 0.001
RUN_MAX = 16
RUN_PATIENCE = 0.05
ACK_DELAY = 0.002
#: The default ``prefetch`` follows the workers' pace: about four claim rounds of what they take
#: (at least ``workers``: slow handlers keep a few jobs ahead, so they are not hoarded from other
#: nodes), at most this many per worker. Only the jobs marked started count an
#: attempt when their process dies, and the claimer marks about two rounds' worth ahead. Fast
#: handlers reach the cap. A higher one trades latency for throughput: at 128 a worker the
#: intake's benchmark ran 13% more jobs a second (16 workers) but its submits' p99 doubled
#: (claims of hundreds of jobs make every commit longer).
PREFETCH_PER_WORKER = 32
#: ... and the jobs it holds ahead take at most about this many bytes of payload (big payloads:
#: fewer ahead), by a sample of one job's payload a claim.
PREFETCH_BYTES = 64 << 20


def _pop_all(run: deque[Job]) -> list[Job]:
    """Empty a worker's run, one atomic pop at a time (its worker pops it without the lock)."""
    out = []
    while True:
        try:
            out.append(run.popleft())
        except IndexError:
            return out


def _payload_bytes(payload: Any) -> int:
    """About how much memory a claimed payload holds: its length as bytes or text, else as JSON."""
    if isinstance(payload, (bytes, str)):
        return len(payload)
    try:
        return len(json.dumps(payload))
    except (TypeError, ValueError):  # a store's own payload type: count it small
        return 64


class Intake(Drains):
    """A durable intake: a :class:`~servicehost.components.Component` whose queue is a store.

    ``handler(job)`` runs on a worker thread for each job (``job.id``, ``job.payload``,
    ``job.attempt``, ``job.key``). Delivery is at least once: make the handler idempotent (a job
    whose ack had not committed when its process died runs again, with a higher ``attempt``).

    ``store``: a :class:`~.store.Store`, or its URL (``sqlite:////var/lib/app/jobs.sqlite3``;
    opened by :meth:`start`, closed at the end of the drain), or a path (a SQLite file).
    ``lease``: seconds a claim holds a job without renewal (renewed every ``lease / 3`` while its
    handler runs). ``max_attempts``: claims a job gets (counted at claim) before it is
    dead-lettered. ``hang_timeout``: a handler running longer stops renewing its job's lease (so
    the job can be taken back); 0 or None: never. ``retry_base``/``retry_cap``: the backoff of a
    failed job, ``retry_base * 2**(attempt-1)`` up to ``retry_cap`` seconds, times a jitter in
    [0.5, 1.5). ``prefetch``: jobs claimed ahead of the free workers, so a worker that finishes
    finds its next job without waiting for a commit, and each commit carries many. The default
    follows the pace: about four claim rounds of what the workers take, at least ``workers``, at
    most ``32 * workers`` (slow handlers keep a few jobs ahead, so they are not hoarded from
    other nodes; trivial ones get deep claims). When a process dies, the jobs it had marked started count an attempt each (the
    running ones, and those about to run: about two claim rounds' worth, at least ``workers``; a
    job beside a poison job included, so keep ``max_attempts`` above the crashes in a row you
    expect); the rest of the prefetch does not. ``prefetch=0`` claims only for free workers.

    ``transactional=True``: exactly once, for a handler that writes to the store's own database.
    The handler is called as ``handler(job, connection)`` inside one transaction that also acks
    the job (:meth:`~.store.Store.complete`): its writes and the ack commit together or not at
    all. A handler that raises leaves nothing written (the job fails as usual); one whose lease
    was lost meanwhile has its writes rolled back (``LeaseLost``: counted as fenced, logged, not a
    failure). On SQLite the transaction holds the file's write lock while the handler runs.
    """

    #: What the host's hang watch uses for this component: never. A long job is normal here; the
    #: intake's own ``job_hang_timeout`` stops renewing its lease instead (see the module docstring).
    hang_timeout = math.inf

    def __init__(
        self,
        handler: Callable[[Job], Any] | Callable[[Job, Any], Any],
        *,
        store: Store | str | Path,
        workers: int = 16,
        lease: float = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        hang_timeout: float | None = 300.0,
        retry_base: float = 1.0,
        retry_cap: float = 3600.0,
        prefetch: int | None = None,
        name: str = "intake",
        transactional: bool = False,
    ) -> None:
        try:  # the stores' own checks, so that what is taken here is what every store takes
            checked_count("workers", workers, 1)
            checked_options(None, None, 0, None, max_attempts)
            if prefetch is not None:
                checked_count("prefetch", prefetch)
            for label, value in (("lease", lease), ("retry_base", retry_base), ("retry_cap", retry_cap),
                                 ("hang_timeout", 0.0 if hang_timeout is None else hang_timeout)):
                checked_seconds(label, value)
            if not lease > 0:
                raise StoreError(f"lease must be more than 0 seconds, not {lease!r}")
            if not isinstance(store, Store):  # a URL or a path: which store it names, known now (opened at start)
                if not isinstance(store, (str, os.PathLike)):
                    raise StoreError(f"store must be a Store, a store URL or a file path, not {type(store).__name__}")
                known_store(store)
        except StoreError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if not callable(handler):
            raise TypeError(f"{name}: the handler must be callable (a function taking the job), not {handler!r}")
        self.name = name
        self.handler = handler
        self.transactional = transactional
        self.workers = workers
        self.lease = float(lease)
        self.max_attempts = max_attempts
        self.job_hang_timeout = float(hang_timeout or 0.0)
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self._adaptive = prefetch is None
        self._job_bytes = 1  # the payload size the default prefetch reckons with (a running estimate)
        self._prefetch = PREFETCH_PER_WORKER * workers if prefetch is None else max(0, prefetch)
        self._ahead = min(workers, self._prefetch)  # the default's current depth (adaptive)
        self.capacity = workers + self._prefetch
        self.node = new_node_id()
        self._given: Store | str | Path = store
        self.store: Store | None = store if isinstance(store, Store) else None
        self._owns_store = not isinstance(store, Store)

        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the workers wait on it for marked jobs
        self._claimer_wake = threading.Condition(lock)  # the claimer waits on it for a free slot
        self._claimer_idle = False  # it waits: a finished job wakes it
        self._store_empty = False  # its last claim found nothing: claim again once the buffer is out
        self._idle_workers = 0
        self._claimed: deque[Job] = deque()  # claimed ahead, not marked started: a lapse gives their attempt back
        self._ready: deque[Job] = deque()  # marked started (committed), waiting for a worker
        self._marking: list[Job] = []  # being marked by the claimer right now
        self._held = 0  # claimed and not finished (all of the above + running): what the claimer fills up to
        self._taken = 0  # jobs workers took (the claimer marks ahead what they take in one of its rounds)
        self._closing = False
        self._paused = False
        self._holding = False  # a host drain: claim nothing new, finish what is held
        self._done = threading.Event()  # the drain is over: the renewer ends
        self._started = False
        self._hand_back_lock = threading.Lock()
        self._stop_deadline: Deadline | None = None  # the drain's
        self._threads: list[threading.Thread] = []
        self._stats = [WorkerStats(f"{name}-{i}") for i in range(workers)]
        self._running: list[Job | None] = [None] * workers
        self._runs: list[deque[Job]] = [deque() for _ in range(workers)]  # taken with a worker's job, to run next
        self._finished: list[deque[Job]] = [deque() for _ in range(workers)]  # a run's ended jobs, to ack
        self._waits: deque[float] = deque(maxlen=256)
        self._wait_tick = 0
        self._overran: set[int] = set()  # jobs whose lease is no longer renewed (ids)
        # acks and fails not yet read back: (job, its future), or (a round of jobs, ack_many's future)
        self._pending: deque[tuple[Job | list[Job], Future[Any]]] = deque()
        self._settling = threading.Lock()  # the renewer and the drain's end both read answers
        self._acks: list[Job] = []  # jobs whose handler returned, for the next ack round
        self._acks_since = 0.0  # when the first of them ended
        self._schedules: list[_Schedule] = []  # every(): submitted by the renewer thread
        # counted by this intake (its own threads only: plain integers)
        self._claimed_count = 0
        self._released = 0
        self._dead_at_claim = 0
        self._retries = 0
        self._dead_lettered = 0
        self._fenced = 0
        self._stats_cache: tuple[float, Stats | None] = (-math.inf, None)

    # -- life ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store (when given its URL) and start the threads. ``Service.use`` calls it; a
        store that cannot be opened fails the service's start. Starting twice does nothing."""
        if self._started:
            return
        if self.store is None:
            self.store = open_store(str(self._given))
        store = self.store
        self._started = True
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=s.name, daemon=True) for i, s in enumerate(self._stats)
        ]
        self._claimer = threading.Thread(target=self._claim_loop, name=f"{self.name}-claimer", daemon=True)
        self._renewer = threading.Thread(target=self._renew_loop, name=f"{self.name}-renewer", daemon=True)
        for thread in (*self._threads, self._claimer, self._renewer):
            thread.start()
        logs.intake_started(log, self.name, store.url, self.workers, self.lease, self.node)

    def __enter__(self) -> Self:
        self.start()
        return self

    # -- the claimer --------------------------------------------------------------------------------
    def _claim_loop(self) -> None:
        """Keep ``capacity`` jobs held: claim what is free, and mark started (``store.start``) the
        claimed jobs the workers will take before the next round; both ride one commit. A worker
        runs only a job whose mark has committed: the jobs claimed ahead never count an attempt
        when this process dies, and the marked ones are about two rounds' worth."""
        store = self.store
        assert store is not None
        cond, claimed, ready = self._cond, self._claimed, self._ready
        pause = 0.0
        taken_before = 0
        try:
            while True:
                with cond:
                    while True:
                        if self._closing:
                            back = self._take_back_locked()  # what the drain could not see (a round's)
                            if back:
                                cond.release()
                                try:
                                    self._release(back)
                                finally:
                                    cond.acquire()
                            return
                        if self._paused:
                            if claimed or ready:
                                self._give_back_locked()  # a paused node holds no jobs others could run
                                continue
                        else:
                            # what the workers took in the last round, twice over (a round is a commit)
                            took = self._taken - taken_before
                            target = max(self.workers, 2 * took)
                            mark = min(len(claimed), target - len(ready)) if claimed else 0
                            ahead = self._prefetch
                            if self._adaptive:  # four rounds of it, shrinking slowly, within the bytes
                                ahead = max(self.workers, min(ahead, max(4 * took, self._ahead * 3 // 4),
                                                              PREFETCH_BYTES // self._job_bytes))
                            free = 0 if self._holding else self.workers + ahead - self._held
                            if claimed and self._store_empty:
                                free = 0  # nothing to claim a moment ago: mark what is held first
                            if mark > 0 or free > 0:
                                break
                        self._claimer_idle = True
                        self._claimer_wake.wait()
                        self._claimer_idle = False
                    taken_before = self._taken
                    self._ahead = ahead
                    # what the workers need marked beyond the ready and those marked now: the claim's
                    # first jobs, marked in its own commit (they go straight to the workers)
                    start = max(0, min(free, target - len(ready) - max(0, mark)))
                    batch = [claimed.popleft() for _ in range(max(0, mark))]
                    self._marking = batch
                    more = len(claimed)
                failed: tuple[str, StoreError] | None = None
                jobs: list[Job] = []
                try:
                    marked = store.start(batch) if batch else None  # first: one commit holds both
                except StoreError as exc:
                    marked, failed = None, ("start", exc)
                if free > 0 and failed is None:
                    waiting = not (batch or more)
                    try:  # a claim that waits for a first job ends within CLAIM_WAIT (or when the store closes)
                        jobs = store.claim(self.node, free, self.lease, wait=CLAIM_WAIT if waiting else 0.0,
                                           start=start)
                    except StoreError as exc:
                        failed = ("claim", exc)
                    self._store_empty = not jobs
                if marked is not None:
                    try:
                        marked.result(self.lease / 3)
                    except StoreError as exc:
                        failed = ("start", exc)
                with cond:
                    self._marking = []
                    if failed and failed[0] == "start":
                        claimed.extendleft(reversed(batch))  # not known to be marked: ahead again
                    elif batch:
                        ready.extend(batch)
                        if self._idle_workers:
                            cond.notify()  # one: a worker that finds more wakes the next
                if jobs:
                    self._take(jobs, start)
                if failed is None:
                    pause = 0.0
                    continue
                if isinstance(failed[1], StoreClosed):
                    return
                pause = min(STORE_RETRY_CAP, max(0.1, pause * 2))
                logs.intake_store_failed(log, self.name, failed[0], one_line(failed[1]), pause)
                if self._done.wait(pause):
                    return
        except BaseException as exc:  # never die silently
            logs.worker_crashed(log, self.name, "claimer", exc_info=exc)
            raise

    def _take(self, jobs: list[Job], started: int) -> None:
        """Put claimed jobs in the buffers (the first ``started``, marked by their claim, ready for
        the workers; the rest claimed ahead), or give them back when the intake is closing; a job
        claimed past ``max_attempts`` (its earlier claims ended with their process) goes to the
        dead-letter table without running."""
        self._job_bytes = (self._job_bytes + _payload_bytes(jobs[len(jobs) // 2].payload)) // 2 or 1
        spent = [j for j in jobs if j.attempt > self.max_attempts]
        back: list[Job] = []
        with self._cond:
            self._claimed_count += len(jobs)
            if self._closing or self._paused:
                back = [j for j in jobs if j.attempt <= self.max_attempts]
            elif spent:
                for i, job in enumerate(jobs):
                    if job.attempt <= self.max_attempts:
                        (self._ready if i < started else self._claimed).append(job)
                        self._held += 1
            else:
                self._ready.extend(jobs[:started])
                self._claimed.extend(jobs[started:])
                self._held += len(jobs)
            if started and self._ready and self._idle_workers:
                self._cond.notify()  # one: a worker that finds more wakes the next
            self._dead_at_claim += len(spent)
        store = self.store
        assert store is not None
        for job in spent:
            logs.intake_attempts_spent(log, self.name, job.id, job.attempt, self.max_attempts)
            self._count_fail(job, self._safely(store.fail, job, f"claimed for attempt {job.attempt} > max_attempts "
                                             f"{self.max_attempts}: the earlier attempts ended with their "
                                             "process (killed, or crashed) before the handler returned",
                                                   dead=True))
        if back:
            self._release(back)

    def _take_back_locked(self) -> list[Job]:
        """(Holding ``_cond``.) Every held job no worker took, out of the buffers (the workers' runs
        included: a worker takes its run's next job without the lock, so each is popped once, by
        one side)."""
        back = [*self._claimed, *self._ready]
        for run in self._runs:
            back += _pop_all(run)
        self._claimed.clear()
        self._ready.clear()
        self._held -= len(back)
        return back

    def _give_back_locked(self) -> None:
        """(Holding ``_cond``.) Release the buffers at once, from the claimer (a pause)."""
        back = self._take_back_locked()
        self._cond.release()
        try:
            self._release(back)
        finally:
            self._cond.acquire()

    def _release(self, jobs: list[Job], deadline: Deadline | None = None) -> None:
        """Give ``jobs`` back to the store (ready again at once); within the stop's deadline once
        the intake is draining, else the store's own timeout."""
        if not jobs:
            return
        store = self.store
        assert store is not None
        deadline = self._stop_deadline if deadline is None else deadline
        try:
            store.release(jobs, timeout=None if deadline is None else deadline.remaining())
        except StoreError as exc:  # they come back when their leases run out
            logs.intake_store_failed(log, self.name, f"release of {len(jobs)} job(s)", one_line(exc), self.lease)
            return
        with self._cond:
            self._released += len(jobs)
        logs.intake_released(log, self.name, len(jobs))

    # -- the workers --------------------------------------------------------------------------------
    def _work(self, index: int) -> None:
        """A worker: take a job (after a short handler, a *run* of the next few with it, run in
        order without the lock: the lock section a job, shared by every worker and the claimer,
        is what short jobs cost most), run it, hand it to the next ack round. A run's rest goes
        back to the shared buffer when the intake pauses or closes (then to the store), or when a
        handler of the run takes long (:meth:`_unstick_runs`)."""
        stats = self._stats[index]
        store = self.store
        assert store is not None
        cond, ready, running, run = self._cond, self._ready, self._running, self._runs[index]
        finished = self._finished[index]  # a run's jobs to ack (the renewer sends them when one job is long)
        wake = self._claimer_wake
        workers = self.workers
        job: Job | None = None
        acked = False  # the job's handler returned: its ack joins the round
        ended = 0.0
        took = math.inf  # the last handler's run time: a run follows only a short one
        done = 0  # jobs ended since the last lock section
        try:
            while True:
                nxt = None
                if job is not None and run and not (self._closing or self._paused):
                    try:
                        nxt = run.popleft()
                    except IndexError:  # handed back meanwhile
                        pass
                if nxt is not None:  # the run's next job, without the lock
                    done += 1
                    if acked:
                        finished.append(job)  # type: ignore[arg-type]
                    job = nxt
                    started = stats.busy_since = _monotonic()
                    stats.current = job
                    running[index] = job
                else:
                    send: list[Job] | None = None
                    back: list[Job] = []
                    with cond:  # one lock section a run: its end, the next one's start
                        if job is not None:
                            stats.busy_since = None
                            running[index] = None
                            done += 1
                            if acked:
                                finished.append(job)
                            if run:  # a pause or the end: the rest of the run goes back
                                rest = _pop_all(run)
                                if self._closing:
                                    back = rest  # to the store (the drain took the buffers back already)
                                    done += len(rest)
                                else:
                                    ready.extendleft(reversed(rest))
                                    if self._idle_workers:
                                        cond.notify()
                            self._held -= done
                            done = 0
                            if finished:
                                if not self._acks:
                                    self._acks_since = ended
                                self._acks += _pop_all(finished)
                            if self._claimer_idle:
                                wake.notify()  # a slot to fill, or the marked jobs run low
                            job = None
                        if back:
                            pass  # the worker gives them back below, outside the lock, then ends
                        elif self._acks and (not ready or self._paused or self._closing
                                             or len(self._acks) >= ACK_ROUND or ended - self._acks_since >= ACK_DELAY):
                            send, self._acks = self._acks, []
                        else:
                            while not ready or self._paused:
                                if self._closing:
                                    return
                                self._idle_workers += 1
                                cond.wait()
                                self._idle_workers -= 1
                            if self._closing:
                                return  # what is left is released by the drain
                            job = ready.popleft()
                            if took < RUN_SHORT:  # a fair share of what is ready: the others get theirs
                                for _ in range(min(RUN_MAX, len(ready) // (workers + 1))):
                                    run.append(ready.popleft())
                            if ready and self._idle_workers:
                                cond.notify()  # the next one (a wake each, not all of them for every batch)
                            self._taken += 1 + len(run)
                            started = stats.busy_since = _monotonic()
                            stats.current = job
                            running[index] = job
                    if back:
                        self._release(back)
                        continue
                    if send is not None:
                        self._send_acks(store, send)  # outside the lock, then back for a job
                        continue
                assert job is not None
                if job.attempt == 1:
                    self._sample_wait(job)
                acked = self._run(stats, store, job)
                ended = _monotonic()
                took = ended - started  # stats.sample(started), inline: once a job
                stats.busy_seconds += took
                stats._tick += 1
                if stats._tick >= LATENCY_SAMPLE_EVERY:
                    stats.record(took)
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, self.name, stats.name, exc_info=exc)
            raise

    def _unstick_runs(self) -> None:
        """(The renewer.) When a handler has run for ``RUN_PATIENCE`` seconds, the rest of its
        worker's run goes back to the shared buffer, for the other workers, and the run's jobs that
        ended before it join the ack round: a job that turned out long (or hangs) holds up no
        other, nor their acks. (Until the worker's next lock section they still count as held.)"""
        now = _monotonic()
        for stats, run, finished in zip(self._stats, self._runs, self._finished):
            since = stats.busy_since
            if (run or finished) and since is not None and now - since >= RUN_PATIENCE:
                with self._cond:
                    rest = _pop_all(run)
                    if rest:
                        self._ready.extendleft(reversed(rest))
                        if self._idle_workers:
                            self._cond.notify()
                    ended = _pop_all(finished)
                    if ended:
                        if not self._acks:
                            self._acks_since = since  # they ended before this one started
                        self._acks += ended

    def _run(self, stats: WorkerStats, store: Store, job: Job) -> bool:
        """Run ``job``'s handler; True when it returned and its ack is still to be sent (a
        failure is sent here, a transactional completion committed here)."""
        try:
            if self.transactional:
                try:  # the handler's writes and the ack: one transaction
                    store.complete(job, functools.partial(self.handler, job))
                except LeaseLost:
                    with self._settling:  # workers and the renewer count fenced jobs
                        self._fenced += 1
                    logs.intake_rolled_back(log, self.name, job.id, job.attempt)
                    return False
                stats.completed += 1
                return False
            self.handler(job)  # type: ignore[call-arg]
        except BaseException as exc:  # a job's error never ends the worker
            stats.failed += 1
            stats.error(exc)
            error = one_line(exc)
            limit = min(self.max_attempts, job.max_attempts)
            if job.attempt >= limit:
                logs.intake_job_dead(log, self.name, job.id, job.attempt, limit, exc_info=exc)
                self._count_fail(job, self._safely(store.fail, job, error, dead=True))
            else:
                retry_in = backoff(job.attempt, base=self.retry_base, cap=self.retry_cap)
                logs.intake_job_failed(log, self.name, job.id, job.attempt, limit, retry_in, exc_info=exc)
                self._count_fail(job, self._safely(store.fail, job, error, retry_in=retry_in))
            return False
        stats.completed += 1
        return True

    def _send_acks(self, store: Store, jobs: list[Job]) -> None:
        """One ack round: the jobs' acks in one operation, its answer read back by :meth:`_settle`."""
        future = self._safely(store.ack_many, jobs)
        if future is not None:
            self._pending.append((jobs, future))

    def _flush_acks(self, older_than: float = 0.0) -> None:
        """Send the round the workers gathered, when its first job ended ``older_than`` seconds ago
        or more (the renewer: a round that busy workers left; the drain: all of it)."""
        store = self.store
        assert store is not None
        with self._cond:
            if not self._acks or _monotonic() - self._acks_since < older_than:
                return
            send, self._acks = self._acks, []
        self._send_acks(store, send)

    def _safely(self, call: Callable[..., Future[Any]], *args: Any, **kwargs: Any) -> Future[Any] | None:
        """An ack or fail whose store refused it at once (closed, full): the job comes back when
        its lease runs out, so it is logged, not raised into the worker."""
        try:
            return call(*args, **kwargs)
        except StoreError as exc:
            logs.intake_store_failed(log, self.name, call.__name__, one_line(exc), self.lease)
            return None

    def _count_fail(self, job: Job, future: Future[str] | None) -> None:
        if future is not None:
            self._pending.append((job, future))

    def _settle(self) -> None:
        """Read the answers of the acks and fails committed since the last call (oldest first; the
        store commits them in order): count retries, dead letters and fenced ones, and log a late
        ack. Runs on the renewer thread, and once more at the end of the drain, which may overlap
        the renewer's last call: one at a time, so each answer is read (counted, logged) once."""
        with self._settling:
            self._settle_locked()

    def _settle_locked(self) -> None:
        pending = self._pending
        while pending:
            job, future = pending[0]
            if not future.done():
                return
            pending.popleft()
            try:
                outcome = future.result(0)
            except BaseException as exc:  # a commit that failed: the jobs come back after their leases
                what = f"completion of job {job.id}" if isinstance(job, Job) else f"acks of {len(job)} job(s)"
                logs.intake_store_failed(log, self.name, what, one_line(exc), self.lease)
                continue
            if isinstance(job, list):  # an ack round: the ids fenced (the lease was lost)
                if outcome:
                    late = set(outcome)
                    for each in job:
                        if each.id in late:
                            self._fenced += 1
                            logs.intake_late_ack(log, self.name, each.id, each.attempt)
                continue
            if outcome is True or outcome == "done":
                continue
            if outcome == "retry":
                self._retries += 1
            elif outcome == "dead":
                self._dead_lettered += 1
            else:  # False or "fenced": the lease was lost, someone else may run it
                self._fenced += 1
                logs.intake_late_ack(log, self.name, job.id, job.attempt)

    def _sample_wait(self, job: Job) -> None:
        self._wait_tick += 1  # racy across workers: a sample more or less changes nothing
        if self._wait_tick >= WAIT_SAMPLE_EVERY:
            self._wait_tick = 0
            self._waits.append(max(0.0, time.time() - job.submitted_at))

    # -- leases from heartbeats -----------------------------------------------------------------------
    def every(self, seconds: float, name: str, payload: Any = None, *, key: str | None = None,
              priority: int = 0) -> Self:
        """Submit a job once per ``seconds`` of the wall clock (the ticks are ``time() // seconds``),
        single across nodes: every node given the same schedule submits each tick's job under the
        idempotency key ``periodic_key(name, tick)``, so one job exists per tick however many run
        it. Its payload is ``payload``, or ``{"periodic": name, "tick": tick}`` when None. A tick no
        node was up for is skipped, never made up later. Returns the intake, so that
        ``self.use(Intake(...).every(3600, "sweep"))`` reads well. The renewer thread submits them."""
        if type(name) is not str or not name or "\0" in name:
            raise ValueError(f"{self.name}: every() needs a job name (no NUL), got {name!r}")
        try:  # here, not at every tick on the renewer's thread, where it could only be logged
            period = checked_seconds("seconds", seconds)
            if not period > 0:
                raise StoreError(f"seconds must be more than 0, not {seconds!r}")
            checked_options(key, periodic_key(name, 0), priority, None, None)
            if payload is not None and not isinstance(payload, (bytes, bytearray, memoryview)):
                to_json(payload)
        except (StoreError, TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{self.name}: every({name!r}): {exc}") from None
        self._schedules.append(_Schedule(name, period, payload, key, priority))
        return self

    def _submit_due(self, store: Store) -> float:
        """Submit the periodic jobs whose tick began (each once per tick here; the store's idempotency
        keeps them one per tick across nodes). Seconds until the next tick begins (inf: none). A
        stopping intake submits no more."""
        wait = math.inf
        if self._closing:
            return wait
        for each in self._schedules:
            now = time.time()
            tick = int(now // each.seconds)
            if tick != each.last:
                payload = {"periodic": each.name, "tick": tick} if each.payload is None else each.payload
                try:
                    store.submit(payload, key=each.key, idempotency_key=periodic_key(each.name, tick),
                                 priority=each.priority,
                                 # on the renewer's thread: never longer than a renewal period
                                 timeout=min(self.lease / 3, max(SETTLE_EVERY, each.seconds / 2)))
                    each.last = tick
                except StoreClosed:
                    raise
                except StoreError as exc:  # tried again at the next wake, while the tick lasts
                    logs.intake_store_failed(log, self.name, f"periodic job {each.name}", one_line(exc), SETTLE_EVERY)
            wait = min(wait, (tick + 1) * each.seconds - time.time())
        return wait

    def _renew_loop(self) -> None:
        store = self.store
        assert store is not None
        period = self.lease / 3
        due = _monotonic() + period
        next_tick = math.inf
        try:
            while not self._done.wait(max(0.0, min(SETTLE_EVERY, due - _monotonic(), next_tick))):
                if self._schedules:
                    try:
                        next_tick = self._submit_due(store)
                    except StoreClosed:
                        return
                self._unstick_runs()
                self._flush_acks(older_than=ACK_DELAY)  # what busy workers left in a round
                self._settle()
                if _monotonic() < due:
                    continue
                due = _monotonic() + period
                exclude = self._overrunning()
                try:
                    store.renew(self.node, self.lease, exclude=exclude, timeout=period)
                except StoreClosed:
                    return
                except StoreError as exc:  # the next period tries again; a lease is 3 periods long
                    logs.intake_store_failed(log, self.name, "lease renewal", one_line(exc), period)
        except BaseException as exc:
            logs.worker_crashed(log, self.name, "renewer", exc_info=exc)
            raise

    def _overrunning(self) -> list[int]:
        """Ids of the jobs whose handler has run longer than the intake's hang timeout (each logged
        once): their leases are no longer renewed."""
        limit = self.job_hang_timeout
        if limit <= 0:
            return []
        now = _monotonic()
        out = []
        for stats, job in zip(self._stats, self._running):
            since = stats.busy_since
            if job is None or since is None or now - since <= limit:
                continue
            out.append(job.id)
            if job.id not in self._overran:
                self._overran.add(job.id)
                logs.intake_job_overran(log, self.name, job.id, now - since, limit, stats.name)
        return out

    # -- the component contract -------------------------------------------------------------------------
    def close(self) -> None:
        """Claim no more; workers finish the job they run and take no other (the jobs claimed but
        not started are given back to the store by :meth:`drain`, at once). Never blocks."""
        with self._cond:
            self._closing = True
            self._paused = False
            self._cond.notify_all()
            self._claimer_wake.notify_all()

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close; give the claimed jobs that did not start back to the store (ready again at once);
        let the running handlers finish (and be acked) until ``deadline``; commit what is pending;
        close the store when the intake opened it. Returns the handlers still running at the
        deadline (their jobs come back when their leases run out), else None."""
        self._stop_deadline = deadline  # what the claimer and the workers give back is bounded by it too
        self.close()
        if not self._started:
            return None
        with self._hand_back_lock:
            with self._cond:
                back = self._take_back_locked()
            self._release(back, deadline)
            for thread in self._threads:
                thread.join(deadline.remaining())
            with self._cond:  # what a worker still running (past the deadline) ended before
                for finished in self._finished:
                    self._acks += _pop_all(finished)
            self._flush_acks()  # what the workers ended with
            # A round under way ends, and gives back what it claimed, before the store may close: a
            # claim that waits for a first job ends within CLAIM_WAIT, and one that found jobs has
            # committed them (the store closed under it, they would wait out their lease).
            self._claimer.join(deadline.remaining())
            running = [f"job {job.id}" for job in self._running if job is not None]
            if not running and not self._done.is_set():
                self._done.set()  # the renewer ends: nothing runs here any more
                store = self.store
                assert store is not None
                try:
                    store.flush(deadline.remaining())
                    self._settle()
                    if self._owns_store:
                        store.close(deadline.remaining())
                except StoreError as exc:
                    logs.intake_store_failed(log, self.name, "the last commit", one_line(exc), self.lease)
            self._claimer.join(deadline.remaining())
            if not running:
                return None
            return Unfinished(self.name, "jobs", 0, len(running), True, tuple(running))

    def pause(self) -> None:
        """Workers finish the job they run and take no other; the claimed jobs not started are
        given back to the store (other nodes may run them) until :meth:`resume`."""
        with self._cond:
            self._paused = True
            self._cond.notify_all()
            self._claimer_wake.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()
            self._claimer_wake.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def hold_intake(self) -> None:
        """A host drain: claim nothing new; the workers finish the jobs claimed already."""
        with self._cond:
            self._holding = True

    def release_intake(self) -> None:
        with self._cond:
            self._holding = False
            self._cond.notify_all()
            self._claimer_wake.notify_all()

    # -- observation ----------------------------------------------------------------------------------
    def counters(self) -> Counters:
        """``submitted``: jobs this intake claimed; ``completed``/``failed``: handlers that returned
        or raised; ``queue_depth``: claimed jobs waiting for a worker here; ``depth``: jobs ready
        in the store (every node's backlog); latency: run times; ``wait_*``: submit to start of
        first attempts (sampled); ``retries``, ``dead_letters`` (the dead-letter table's size),
        ``rescues`` and ``commit_batch`` (mean operations per commit) from the store."""
        base = sum_counters(self.name, self._claimed_count, self._stats,
                            not_run=self._released + self._dead_at_claim, queue_capacity=self.capacity)
        stats = self._store_stats()
        waits = sorted(self._waits)
        metrics = None
        store = self.store
        if store is not None:
            try:
                metrics = store.metrics()
            except StoreError:
                metrics = None
        extra: dict[str, Any] = {
            "depth": None if stats is None else stats.ready,
            "wait_p50": waits[len(waits) // 2] if waits else None,
            "wait_p99": waits[min(len(waits) - 1, int(len(waits) * 0.99))] if waits else None,
            "retries": self._retries,
            "rescues": None if metrics is None else metrics.rescued,
            "dead_letters": None if stats is None else stats.dead,
            "commit_batch": (metrics.committed_ops / metrics.commits) if metrics and metrics.commits else None,
        }
        known = {f.name for f in dataclasses.fields(Counters)}
        return dataclasses.replace(base, **{k: v for k, v in extra.items() if k in known})

    def _store_stats(self) -> Stats | None:
        at, cached = self._stats_cache
        now = _monotonic()
        if now - at < STATS_TTL or self.store is None or self._done.is_set():
            return cached
        try:
            cached = self.store.stats()
        except StoreError:
            cached = None
        self._stats_cache = (now, cached)
        return cached

    def beats(self) -> Iterator[Beat]:
        for s in self._stats:
            busy_since, job = s.busy_since, s.current
            what = f"job {job.id} ({describe(self.handler)})" if busy_since is not None and job is not None else ""
            yield Beat(self.name, s.name, busy_since, what)

    def __repr__(self) -> str:
        url = self.store.url if self.store is not None else "(not opened)"
        return f"Intake({self.name!r}, {url}, workers={self.workers})"
