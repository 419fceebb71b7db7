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
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Generic, TypeVar

from .. import logs
from ..errors import QueueClosed
from ..stopping import Deadline
from ._supervision import Beat, Counters, HandBack, PauseGate, Unfinished, WorkerStats, describe
from .queues import ClosableQueue

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("servicehost.workers")
_monotonic = time.monotonic
_SINGLE = -1  # offset value marking a single task (payload = args tuple)
_JOIN = object()  # join() marker: every worker meets at a barrier


class Result(Generic[T]):
    """The outcome of one ``submit_result`` task. Cheaper than a Future: one lock as a latch."""

    __slots__ = ("_latch", "_value", "_error")

    def __init__(self) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._value: Any = None
        self._error: BaseException | None = None

    def _set(self, value: Any, error: BaseException | None) -> None:
        self._value, self._error = value, error
        self._latch.release()

    def done(self) -> bool:
        return not self._latch.locked()

    def result(self, timeout: float | None = None) -> T:
        """Block up to ``timeout`` seconds for the value; re-raise the task's exception."""
        if not self._latch.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("task not finished")
        self._latch.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]


class _Batch:
    """Shared by the chunks of one ``map`` call: results in order, and a latch for the last."""

    __slots__ = ("results", "errors", "pending", "lock", "latch")

    def __init__(self, size: int, chunks: int) -> None:
        self.results: list[Any] = [None] * size
        self.errors: list[BaseException] = []
        self.pending = chunks
        self.lock = threading.Lock()
        self.latch = threading.Lock()
        self.latch.acquire()

    def chunk_done(self) -> None:
        with self.lock:
            self.pending -= 1
            last = self.pending == 0
        if last:
            self.latch.release()


class ThreadPool:
    """A fixed set of worker threads; a :class:`~servicehost.workers.Component`.

    Threads start in the constructor and block in the queue while idle (they never poll).
    ``queue_size`` bounds the hand-offs waiting (a chunk counts once): producers block when it
    is full. ``on_unfinished(tasks)`` receives, at a stop deadline, the ``(fn, args)`` pairs that
    never started, so a durable source can take them back.
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
        self._queue: ClosableQueue[tuple[Callable[..., Any], Any, Any, int]] = ClosableQueue(queue_size)
        self._stats = [WorkerStats(f"{name}-{i}") for i in range(workers)]
        self._gate = PauseGate()
        self._join_lock = threading.Lock()
        self._barrier: threading.Barrier | None = None
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
        self._queue.put((fn, args, None, _SINGLE), timeout)

    def submit_result(self, fn: Callable[..., R], *args: Any, timeout: float | None = None) -> Result[R]:
        """Queue ``fn(*args)`` and return a :class:`Result` to wait on."""
        result: Result[R] = Result()
        self._queue.put((fn, args, result, _SINGLE), timeout)
        return result

    def submit_many(
        self, fn: Callable[[T], Any], items: Iterable[T], *, chunksize: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Queue ``fn(item)`` for every item, fire-and-forget, in chunks. Returns the count."""
        count = 0
        for chunk in self._chunks(items, chunksize):
            self._queue.put((fn, chunk, None, 0), timeout, len(chunk))
            count += len(chunk)
        return count

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunksize: int | None = None,
        timeout: float | None = None,
    ) -> list[R]:
        """``[fn(x) for x in items]`` on the pool, in order. Raises the first task error.

        ``timeout`` bounds the whole call (queueing and waiting).
        """
        seq = items if isinstance(items, Sequence) else list(items)
        deadline = Deadline.after(timeout)
        chunks = list(self._chunks(seq, chunksize))
        batch = _Batch(len(seq), len(chunks))
        offset = 0
        for chunk in chunks:
            self._queue.put((fn, chunk, batch, offset), deadline.remaining(), len(chunk))
            offset += len(chunk)
        if chunks:
            left = deadline.remaining()
            if not batch.latch.acquire(timeout=-1 if left is None else left):
                raise TimeoutError(f"{self.name}: map not finished in {timeout}s")
        if batch.errors:
            raise batch.errors[0]
        return batch.results

    def _chunks(self, items: Iterable[T], chunksize: int | None) -> Iterator[list[T]]:
        if chunksize is None:
            # Enough chunks that the last wave is short when tasks block (32 per worker), big
            # enough that tiny tasks cost a loop iteration rather than a hand-off (up to 512).
            known = len(items) if isinstance(items, Sequence) else 1 << 16
            chunksize = max(1, min(512, known // (self.workers * 32)))
        it = iter(items)
        while chunk := list(islice(it, chunksize)):
            yield chunk

    # -- the worker loop -------------------------------------------------------------------------
    def _work(self, stats: WorkerStats) -> None:
        get = self._queue.get
        try:
            while True:
                try:
                    item = get()
                except QueueClosed:
                    return
                if self._gate.paused:
                    self._gate.wait()
                if item is _JOIN:
                    assert self._barrier is not None
                    self._barrier.wait()
                    continue
                fn, payload, sink, offset = item
                stats.current = fn
                started = stats.busy_since = _monotonic()
                if offset == _SINGLE:
                    self._run_one(stats, fn, payload, sink)
                    stats.sample(started)
                else:
                    self._run_chunk(stats, fn, payload, sink, offset)
                    stats.sample(started, len(payload))
                stats.busy_since = None
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, self.name, stats.name, exc_info=exc)
            raise

    def _run_one(self, stats: WorkerStats, fn: Callable[..., Any], args: tuple[Any, ...], sink: Result[Any] | None) -> None:
        try:
            value = fn(*args)
        except BaseException as exc:  # a task's error never ends the worker
            stats.failed += 1
            if sink is None:
                logs.task_failed(log, self.name, describe(fn), exc_info=exc)
            else:
                sink._set(None, exc)
            return
        stats.completed += 1
        if sink is not None:
            sink._set(value, None)

    def _run_chunk(self, stats: WorkerStats, fn: Callable[[Any], Any], chunk: list[Any], batch: _Batch | None, offset: int) -> None:
        failed = 0
        if batch is None:
            for x in chunk:
                try:
                    fn(x)
                except BaseException as exc:  # a task's error never ends the worker
                    failed += 1
                    logs.task_failed(log, self.name, describe(fn), exc_info=exc)
        else:
            results = batch.results
            for i, x in enumerate(chunk, offset):
                try:
                    results[i] = fn(x)
                except BaseException as exc:
                    failed += 1
                    with batch.lock:
                        batch.errors.append(exc)
            batch.chunk_done()
        stats.failed += failed
        stats.completed += len(chunk) - failed

    # -- control ----------------------------------------------------------------------------------
    def join(self, timeout: float | None = None) -> bool:
        """Wait until every task queued before this call has finished (the pool stays open).

        Returns False on timeout. Workers meet at a barrier behind the queued work.
        """
        with self._join_lock:
            self._barrier = threading.Barrier(self.workers + 1)
            for _ in range(self.workers):
                self._queue.put(_JOIN, timeout)  # type: ignore[arg-type]
            try:
                self._barrier.wait(timeout)
            except threading.BrokenBarrierError:
                return False
            return True

    def pause(self) -> None:
        """Workers finish their current task, then take no more until ``resume``."""
        self._gate.pause()

    def resume(self) -> None:
        self._gate.resume()

    @property
    def paused(self) -> bool:
        return self._gate.paused

    def close(self) -> None:
        """Stop intake (producers get QueueClosed); workers still drain what was accepted."""
        self._queue.close()
        self.resume()  # a paused pool must still drain when the service stops

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close, wait for the workers until ``deadline``; report and hand back what is left.

        Fire-and-forget tasks that never ran go to ``on_unfinished``; waited-for ones
        (``submit_result``, ``map``) fail their waiter with QueueClosed instead."""
        self.close()
        for thread in self._threads:
            thread.join(deadline.remaining())
        running = [s for s in self._stats if s.busy_since is not None]
        left = [item for item in self._queue.take_all() if item is not _JOIN]
        if not left and not running:
            return None
        queued = sum(1 if offset == _SINGLE else len(payload) for _, payload, _, offset in left)
        # Someone waits on these: tell them, rather than hand the work back behind their back.
        for _, payload, sink, offset in left:
            if isinstance(sink, Result):
                sink._set(None, QueueClosed(f"{self.name}: stopped before the task ran"))
            elif isinstance(sink, _Batch):
                with sink.lock:
                    sink.errors.append(QueueClosed(f"{self.name}: stopped before {len(payload)} task(s) ran"))
                sink.chunk_done()
        forgettable = [item for item in left if item[2] is None]
        handed_back = False
        if forgettable and self.on_unfinished is not None:
            tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
            for fn, payload, _, offset in forgettable:
                tasks.extend([(fn, payload)] if offset == _SINGLE else [(fn, (x,)) for x in payload])
            self.on_unfinished(tasks)
            handed_back = True
        return Unfinished(
            self.name, "tasks", queued, len(running), handed_back,
            tuple(describe(s.current) for s in running),
        )

    def shutdown(self, timeout: float | None = None) -> Unfinished | None:
        """Close and drain with a deadline ``timeout`` seconds away (None: wait for all)."""
        return self.drain(Deadline.after(timeout))

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- observation -------------------------------------------------------------------------------
    def counters(self) -> Counters:
        return Counters.from_workers(self.name, self._queue.accepted, self._stats)

    def beats(self) -> Iterator[Beat]:
        for s in self._stats:
            busy_since = s.busy_since
            yield Beat(self.name, s.name, busy_since, describe(s.current) if busy_since else "")
