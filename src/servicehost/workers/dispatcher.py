"""Dispatcher: worker threads serving tasks routed by key, one at a time per key, in order.

``submit(key, fn, *args)``: tasks with the same key run one after another in the order they
were submitted (per-key FIFO), as for the messages of one account, device or file. Any free
worker serves any key: there is no fixed key-to-thread mapping, so a slow key holds one worker
and never blocks the others.

How: one deque of tasks per key, and a ready queue of the keys that have tasks and are not
being served. A worker takes the first ready key, runs that key's oldest task, then puts the
key at the back of the ready queue if it has more (so busy keys take turns, fairly).

Memory: a key's state (its deque) exists only while the key has tasks queued or running; it is
removed when the key's last task finishes. So many short-lived keys cost nothing once done, and
at most ``queue_size + workers`` keys are held at any time. ``queue_size`` bounds the tasks
queued over all keys: ``submit`` blocks while it is full.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from .. import logs
from ..errors import QueueClosed, QueueFull
from ..stopping import Deadline
from ..components import Beat, Counters, HandBack, Measures, Unfinished
from ._supervision import Drains, WorkerStats, describe, sum_counters, sum_measures
from ._tasks import report_unfinished

log = logging.getLogger("servicehost.workers")
_monotonic = time.monotonic

_Task = tuple[Callable[..., Any], tuple[Any, ...]]


class Dispatcher(Drains):
    """Keyed worker threads; a :class:`~servicehost.workers.Component`.

    Threads start in the constructor and wait on a condition while idle (they never poll).
    A task's exception is logged with its traceback and counted; the key goes on with its next
    task. ``on_unfinished(tasks)`` receives, at a stop deadline, the ``(key, fn, args)`` triples
    that never started, each key's in order.
    """

    def __init__(
        self,
        workers: int = 8,
        *,
        name: str = "dispatcher",
        queue_size: int = 1024,
        on_unfinished: HandBack | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"{name}: workers must be >= 1, got {workers}")
        if queue_size < 1:
            raise ValueError(f"{name}: queue_size must be >= 1, got {queue_size}")
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        self.on_unfinished = on_unfinished
        # One lock guards the key table, the ready queue and the counts below.
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)  # workers wait here
        self._not_full = threading.Condition(self._lock)  # producers wait here
        self._all_done = threading.Condition(self._lock)  # join() waits here
        self._keys: dict[Hashable, deque[_Task]] = {}  # a key is here iff it has tasks queued or running
        self._ready: deque[Hashable] = deque()  # keys with tasks queued and no task running
        self._depth = 0  # tasks queued over all keys
        self._accepted = 0
        self._rejected = 0  # submits refused: closed, or full past their timeout
        self._not_run = 0  # tasks taken back at a deadline
        self._hand_back_lock = threading.Lock()
        self._closed = False
        self._paused = False
        self._held = False  # a drain: submit waits as on a full queue; workers go on
        self._stats = [WorkerStats(f"{name}-{i}") for i in range(workers)]
        self._threads = [
            threading.Thread(target=self._work, args=(s,), name=s.name, daemon=True) for s in self._stats
        ]
        for thread in self._threads:
            thread.start()

    # -- intake ---------------------------------------------------------------------------------
    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> None:
        """Queue ``fn(*args)`` behind the earlier tasks of ``key``; block while full (up to ``timeout``).

        Raises QueueClosed after ``close()``; QueueFull on timeout. A task that submits to its
        own dispatcher should pass a timeout: with every worker blocked here, nothing drains.
        """
        with self._lock:
            if self._closed:
                self._rejected += 1
                raise QueueClosed(f"{self.name} is closed")
            if self._held or self._depth >= self.queue_size:
                try:
                    self._wait_for_space(timeout)
                except (QueueClosed, QueueFull):
                    self._rejected += 1
                    raise
            tasks = self._keys.get(key)
            if tasks is None:  # new (or finished) key: it is ready at once
                self._keys[key] = deque([(fn, args)])
                self._ready.append(key)
                self._has_work.notify()
            else:  # queued behind the key's running or waiting task; no worker needs waking
                tasks.append((fn, args))
            self._depth += 1
            self._accepted += 1

    def _wait_for_space(self, timeout: float | None) -> None:
        end = None if timeout is None else _monotonic() + timeout
        while (self._held or self._depth >= self.queue_size) and not self._closed:
            left = None if end is None else end - _monotonic()
            if left is not None and left <= 0:
                why = "held (draining)" if self._held else f"full ({self.queue_size} tasks)"
                raise QueueFull(f"{self.name} stayed {why} for {timeout}s")
            self._not_full.wait(left)
        if self._closed:
            raise QueueClosed(f"{self.name} closed while waiting for space")

    # -- the worker loop -------------------------------------------------------------------------
    def _work(self, stats: WorkerStats) -> None:
        try:
            while True:
                with self._lock:
                    while not self._ready or (self._paused and not self._closed):
                        if self._closed and not self._depth:
                            return
                        self._has_work.wait()
                    key = self._ready.popleft()
                    tasks = self._keys[key]
                    fn, args = tasks.popleft()
                    self._depth -= 1
                    self._not_full.notify()
                    if self._closed and not self._depth:
                        self._has_work.notify_all()  # nothing left to take: idle workers may end
                    stats.current = fn
                    started = stats.busy_since = _monotonic()
                try:
                    self._run(stats, fn, args)
                finally:
                    stats.sample(started)
                    stats.busy_since = None
                    self._release(key, tasks)
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, self.name, stats.name, exc_info=exc)
            raise

    def _run(self, stats: WorkerStats, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # a task's error never ends the worker, nor its key
            stats.failed += 1
            stats.error(exc)
            logs.task_failed(log, self.name, describe(fn), exc_info=exc)
            return
        stats.completed += 1

    def _release(self, key: Hashable, tasks: deque[_Task]) -> None:
        """The key's task ended: queue the key again if it has more, else forget it."""
        with self._lock:
            if tasks:
                self._ready.append(key)
                self._has_work.notify()
            else:
                del self._keys[key]
                if not self._keys:
                    self._all_done.notify_all()

    # -- control ----------------------------------------------------------------------------------
    def join(self, timeout: float | None = None) -> bool:
        """Wait until no task is queued or running (the dispatcher stays open). False on timeout."""
        with self._lock:
            return self._all_done.wait_for(lambda: not self._keys, timeout)

    def pause(self) -> None:
        """Workers finish their current task, then take no more until ``resume``."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._has_work.notify_all()

    def hold_intake(self) -> None:
        """A drain: ``submit`` blocks as on a full queue; workers run every task accepted."""
        with self._lock:
            self._held = True

    def release_intake(self) -> None:
        with self._lock:
            self._held = False
            self._not_full.notify_all()

    def close(self) -> None:
        """Stop intake (``submit`` raises QueueClosed); workers still run what was accepted.

        A paused dispatcher is resumed so that it drains.
        """
        with self._lock:
            self._closed = True
            self._paused = False
            self._has_work.notify_all()
            self._not_full.notify_all()

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close, wait for the workers until ``deadline``; report and hand back what is left.

        Tasks that never started are removed (workers end after their current task) and handed
        back as ``(key, fn, args)``. Safe to call again.
        """
        self.close()
        for thread in self._threads:
            thread.join(deadline.remaining())
        with self._hand_back_lock:  # one drain at a time takes back and hands over
            left: list[tuple[Hashable, Callable[..., Any], tuple[Any, ...]]] = []
            with self._lock:
                for key, tasks in list(self._keys.items()):
                    left.extend((key, fn, args) for fn, args in tasks)
                    tasks.clear()
                for key in self._ready:  # not running: nothing else will remove them
                    del self._keys[key]
                self._ready.clear()
                self._depth = 0
                self._has_work.notify_all()
                if not self._keys:
                    self._all_done.notify_all()
                self._not_run += len(left)
            # Workers take a task and mark themselves busy under the same lock: nothing is between.
            running = [describe(s.current) for s in self._stats if s.busy_since is not None]
            return report_unfinished(self.name, "tasks", left, self.on_unfinished, running)

    # -- observation -------------------------------------------------------------------------------
    @property
    def active_keys(self) -> int:
        """Keys with tasks queued or running: the only keys the dispatcher holds state for."""
        return len(self._keys)

    def counters(self) -> Counters:
        return sum_counters(self.name, self._accepted, self._stats, not_run=self._not_run,
                            queue_capacity=self.queue_size)

    def measures(self) -> Measures:
        """Busy time and sampled run times of the workers; rejected submits. (No queue wait: the
        keyed queues are not timed.)"""
        return dataclasses.replace(sum_measures(self._stats), rejected=self._rejected)

    def beats(self) -> Iterator[Beat]:
        for s in self._stats:
            busy_since = s.busy_since
            yield Beat(self.name, s.name, busy_since, describe(s.current) if busy_since else "")
