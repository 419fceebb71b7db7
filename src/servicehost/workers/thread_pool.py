"""ThreadPool: N pre-started threads taking work from one bounded ClosableQueue.

Three ways in, cheapest first:

* ``submit_many(fn, items)`` — bulk fire-and-forget; items travel in chunks (one hand-off per
  chunk), so the per-task cost is a loop iteration, not a lock and a thread wake-up;
* ``submit(fn, *args)`` — one fire-and-forget task (no Future is made);
* ``submit_result(fn, *args)`` → :class:`Result`, and ``map(fn, items)`` → list (chunked).

A task's exception never kills its thread: fire-and-forget failures are logged with their
traceback and counted; waited-for failures are counted and raised to the waiter.
Counters live per worker (no shared lock on the hot path) and are summed on read; run time is
sampled, one task in ``LATENCY_SAMPLE_EVERY``.
"""

from __future__ import annotations

import logging
import threading
import time
from queue import Empty
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

from .. import logs
from ..errors import QueueClosed, QueueFull
from ..stopping import Deadline
from ..components import Beat, Counters, HandBack, Unfinished
from ._supervision import LATENCY_SAMPLE_EVERY, GatedIntake, PauseGate, WorkerStats, describe, sum_counters
from ._tasks import Batch, Claim, One, Result, not_run, report_unfinished, take_back, tell_waiter
from .queues import ClosableQueue

__all__ = ["Result", "ThreadPool"]

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("servicehost.workers")
_monotonic = time.monotonic
#: The largest default chunk: beyond it a bigger hand-off saves nothing measurable.
MAX_CHUNK = 512
_Batch = Batch  # the name process_pool and older code use


class ThreadPool(GatedIntake):
    """A fixed set of worker threads; a :class:`~servicehost.workers.Component`.

    Threads start in the constructor and block in the queue while idle (they never poll).
    ``queue_size`` bounds the hand-offs waiting (a chunk counts once): producers block when it
    is full. ``on_unfinished(tasks)`` receives, at a stop deadline, the ``(fn, args)`` pairs of
    fire-and-forget tasks that never started — including the rest of a chunk a worker had begun —
    so a durable source can take them back; a task someone waits on goes back to its waiter
    instead (QueueClosed). A task given back never runs afterwards (``workers/_tasks.py``).
    """

    def __init__(
        self,
        workers: int = 8,
        *,
        name: str = "pool",
        queue_size: int = 1024,
        on_unfinished: HandBack | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"{name}: workers must be >= 1, got {workers}")
        self.name = name
        self.workers = workers
        self.on_unfinished = on_unfinished
        self._queue: ClosableQueue[Claim | One] = ClosableQueue(queue_size, track=True)
        self._intake = self._queue
        self._not_run = 0  # tasks taken back at a deadline (never run): out of the queue depth
        self._hand_back_lock = threading.Lock()
        self._stats = [WorkerStats(f"{name}-{i}") for i in range(workers)]
        self._gate = PauseGate()
        self._threads = [
            threading.Thread(target=self._work, args=(s,), name=s.name, daemon=True) for s in self._stats
        ]
        for thread in self._threads:
            thread.start()

    # -- intake ---------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> None:
        """Queue ``fn(*args)``; block while the queue is full (up to ``timeout``).

        Raises QueueClosed after ``close()``; QueueFull on timeout.
        """
        self._queue.put(One(((fn, args, None),)), timeout)

    def submit_result(self, fn: Callable[..., R], *args: Any, timeout: float | None = None) -> Result[R]:
        """Queue ``fn(*args)`` and return a :class:`Result` to wait on."""
        result: Result[R] = Result()
        self._queue.put(One(((fn, args, result),)), timeout)
        return result

    def submit_many(
        self, fn: Callable[[T], Any], items: Iterable[T], *, chunksize: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Queue ``fn(item)`` for every item, fire-and-forget, in chunks. Returns the count.

        On QueueClosed / QueueFull the items before the failing chunk were accepted (and will be
        run or handed back); the exception's ``accepted`` attribute says how many.
        """
        count = 0
        put = self._queue.put
        try:
            for chunk in self._chunks(items, chunksize):
                put(Claim(chunk, fn, None, 0), timeout, len(chunk))
                count += len(chunk)
        except (QueueClosed, QueueFull) as exc:
            exc.accepted = count
            raise
        return count

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunksize: int | None = None,
        timeout: float | None = None,
    ) -> list[R]:
        """``[fn(x) for x in items]`` on the pool, in order. Raises the first task error
        (QueueClosed for tasks the pool stopped before running).

        ``timeout`` bounds the whole call (queueing and waiting).
        """
        seq = items if isinstance(items, Sequence) else list(items)
        deadline = Deadline.after(timeout)
        chunks = list(self._chunks(seq, chunksize))
        batch = Batch(len(seq), len(chunks))
        offset = 0
        try:
            for chunk in chunks:
                self._queue.put(Claim(chunk, fn, batch, offset), deadline.remaining(), len(chunk))
                offset += len(chunk)
        except (QueueClosed, QueueFull) as exc:  # the chunks before were accepted, as for submit_many
            exc.accepted = offset
            raise
        return batch.wait(deadline, f"{self.name}: map not finished in {timeout}s")

    def _chunks(self, items: Iterable[T], chunksize: int | None) -> Iterator[list[T]]:
        """Cut ``items`` into hand-offs. A given ``chunksize`` is used as is. By default the size
        adapts to the worker count and to what is left (guided scheduling): each chunk is the
        remaining work shared out over twice the workers, at most ``MAX_CHUNK`` (tiny tasks then
        cost a loop iteration, not a hand-off) and at least 1. So every worker gets work at once
        however many there are, big batches travel in few hand-offs, and the chunks shrink towards
        the end so the last wave is short when tasks block. An iterator of unknown length starts
        with one task per worker and doubles the chunk each time up to ``MAX_CHUNK``."""
        it = iter(items)
        if chunksize is not None:
            while chunk := list(islice(it, chunksize)):
                yield chunk
            return
        share = 2 * self.workers
        if isinstance(items, Sequence):
            left = len(items)
            while left > 0:
                size = max(1, min(MAX_CHUNK, left // share))
                yield list(islice(it, size))
                left -= size
            return
        size, given = 1, 0
        while chunk := list(islice(it, size)):
            yield chunk
            given += 1
            if given >= self.workers:  # every worker has had one: grow towards MAX_CHUNK
                size = min(MAX_CHUNK, size * 2)

    # -- the worker loop -------------------------------------------------------------------------
    def _work(self, stats: WorkerStats) -> None:
        get = self._queue.get
        settle = self._queue.settle
        tick = 1  # the first task is sampled
        try:
            while True:
                # Busy time is counted per run of tasks taken without waiting, not per task: the
                # clock is read when the worker is about to wait (WorkerStats.idle), and a task's
                # start (its heartbeat) opens a run. A saturated pool pays no clock read for it.
                try:
                    claim = get(0)
                except Empty:  # about to wait: the run ends (WorkerStats.idle, inlined: once per wait)
                    since = stats.run_since  # counters
                    if since is not None:  # counters
                        stats.run_since = None  # counters
                        stats.busy_seconds += _monotonic() - since  # counters
                    try:
                        claim = get()
                    except QueueClosed:
                        return
                except QueueClosed:
                    stats.idle()  # counters
                    return
                if self._gate.paused:
                    stats.idle()  # counters
                    self._gate.wait()
                started = stats.busy_since = _monotonic()  # busy before taking: never under-counted
                if stats.run_since is None:  # counters
                    stats.run_since = started  # counters
                if isinstance(claim, One):
                    try:
                        fn, args, sink = claim.take()
                    except IndexError:
                        pass  # taken back at a stop deadline before it ran
                    else:
                        stats.current = fn
                        self._run_one(stats, fn, args, sink)
                        # The run time of one task in LATENCY_SAMPLE_EVERY, inlined: the per-task
                        # path pays no call and no clock read for its counters. Lines marked
                        # "# counters" are what bench/ops.py leaves out to measure them (the
                        # counters benchmark): mark any line added for them.
                        tick -= 1  # counters
                        if not tick:  # counters
                            tick = LATENCY_SAMPLE_EVERY  # counters
                            stats.record(_monotonic() - started)  # counters
                else:
                    stats.current = claim.fn
                    ran = self._run_chunk(stats, claim)
                    if ran:  # counters
                        stats.sample(started, ran, busy=False)  # counters
                stats.busy_since = None
                settle(claim)
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, self.name, stats.name, exc_info=exc)
            raise

    def _run_one(self, stats: WorkerStats, fn: Callable[..., Any], args: tuple[Any, ...], sink: Result[Any] | None) -> None:
        try:
            value = fn(*args)
        except BaseException as exc:  # a task's error never ends the worker
            stats.failed += 1
            stats.error(exc)
            if sink is None:
                logs.task_failed(log, self.name, describe(fn), exc_info=exc)
            else:
                sink._set(None, exc)
            return
        stats.completed += 1
        if sink is not None:
            sink._set(value, None)

    def _run_chunk(self, stats: WorkerStats, claim: Claim) -> int:
        """Run the chunk's tasks one by one, taking each from the claim (a drain at the deadline
        may take the rest). Returns how many ran."""
        fn, batch, take = claim.fn, claim.sink, claim.take
        ran = failed = 0
        try:
            if batch is None:
                while True:
                    x = take()  # IndexError: nothing left (done, or taken back)
                    ran += 1
                    try:
                        fn(x)
                    except BaseException as exc:  # a task's error never ends the worker
                        failed += 1
                        stats.error(exc)
                        logs.task_failed(log, self.name, describe(fn), exc_info=exc)
            else:
                results, offset = batch.results, claim.offset
                while True:
                    x = take()
                    try:
                        results[offset + ran] = fn(x)
                    except BaseException as exc:
                        failed += 1
                        stats.error(exc)
                        batch.fail(exc)
                    ran += 1
        except IndexError:
            pass
        finally:
            stats.failed += failed
            stats.completed += ran - failed
            if batch is not None:
                batch.chunk_done()  # the worker took this chunk from the queue: it closes it
        return ran

    # -- control ----------------------------------------------------------------------------------
    def join(self, timeout: float | None = None) -> bool:
        """Wait until every task queued before this call has finished (the pool stays open).

        Returns False on timeout. The last of those tasks to finish ends the wait
        (``ClosableQueue.wait_settled``): no worker is woken for it.
        """
        return self._queue.wait_settled(timeout)

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close, wait for the workers until ``deadline``; report and give back what is left.

        Every task that has not started by then — queued, or waiting in a chunk a worker has
        begun — is taken back for good: fire-and-forget ones go to ``on_unfinished``, waited-for
        ones (``submit_result``, ``map``) fail their waiter with QueueClosed. Running tasks are
        counted; they finish on their threads (Python cannot stop them)."""
        self.close()
        for thread in self._threads:
            thread.join(deadline.remaining())
        with self._hand_back_lock:  # one drain at a time takes back and hands over
            never_started: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
            to_waiters = 0
            for claim, tasks, owned in take_back(self._queue):  # queued, and left in workers' chunks
                if not tasks:
                    continue
                self._not_run += len(tasks)
                if isinstance(claim, One):
                    (fn, args, sink), = tasks
                    if sink is None:
                        never_started.append((fn, args))
                    else:
                        to_waiters += 1
                        tell_waiter(sink, not_run(self.name), chunk_owner=owned)
                    continue
                assert isinstance(claim, Claim)  # a chunk
                if claim.sink is None:
                    never_started.extend((claim.fn, (x,)) for x in tasks)
                else:
                    to_waiters += len(tasks)
                    tell_waiter(claim.sink, not_run(self.name, len(tasks)), chunk_owner=owned)
            running = [describe(s.current) for s in self._stats if s.busy_since is not None]
            return report_unfinished(self.name, "tasks", never_started, self.on_unfinished, running,
                                     to_waiters=to_waiters)

    # -- observation -------------------------------------------------------------------------------
    def counters(self) -> Counters:
        return sum_counters(self.name, self._queue.accepted, self._stats, not_run=self._not_run,
                            queue_capacity=self._queue.maxsize)

    def beats(self) -> Iterator[Beat]:
        for s in self._stats:
            busy_since = s.busy_since
            yield Beat(self.name, s.name, busy_since, describe(s.current) if busy_since else "")
