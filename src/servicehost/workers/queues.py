"""ClosableQueue: the bounded, closable FIFO the stdlib lacks.

``queue.Queue`` cannot be closed: a consumer blocked in ``get()`` needs a sentinel per consumer,
and a producer blocked in ``put()`` on a full queue cannot be woken at all. Here:

* ``put`` blocks while the queue is full (backpressure) and raises
  :class:`~servicehost.errors.QueueClosed` once the queue is closed;
* ``close()`` stops intake at once and wakes blocked producers; consumers still get every item
  that was accepted (close-and-drain), then ``QueueClosed``;
* ``hold()`` holds intake without closing it (a drain): ``put`` blocks as if the queue were full
  while consumers go on taking what was accepted; ``release()`` lets the producers go on;
* ``take_all()`` removes what is left, for handing it back at a stop deadline;
* with ``track=True`` the queue also remembers every item it accepted until a consumer
  settles it (``settle``): ``outstanding()`` then names the items in the queue *and* those a consumer
  has taken but not finished — with no gap between the two, because the item is recorded under
  the same mutex that accepts it. A drain uses this to find every accepted task at a deadline.

For metrics, the queue counts the tasks it refused (``rejected``: closed, or full past the
caller's timeout) and, when it tracks its items, times about one task in ``WAIT_SAMPLE_EVERY``
from ``put`` to ``get`` (``waits()``, on the histogram grid of ``components.TIME_BUCKETS``): the
hand-off with which the count of tasks accepted reaches a multiple of it is stamped (its put time
kept by item) under the mutex ``put`` holds anyway, and the ``get`` that takes it pops the stamp,
in whatever order consumers take items and however long one is preempted; the others pay one
look into the (small) stamp map.

Consumers block inside ``SimpleQueue.get`` (C code) and take no lock on the way out: the depth
is ``SimpleQueue.qsize()``. Only a producer facing a full queue uses the condition variable; it
sleeps until the queue has drained to a low-water mark (a quarter free), so a saturated producer
is woken once per batch of gets, not once per get. The wake-up cannot be lost: the producer
raises ``_producers_waiting`` before it re-reads the depth, the consumer lowers the depth before
it reads ``_producers_waiting``, and the notify takes the mutex the producer holds until it waits.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from queue import Empty, SimpleQueue
from collections.abc import Container, Sequence
from typing import Generic, TypeVar

from ..components import TIME_BUCKETS, Histogram
from ..errors import QueueClosed, QueueFull

T = TypeVar("T")
_CLOSED = object()  # put once, after the last accepted item; each consumer that sees it passes it on
#: About one task in this many is timed from ``put`` to ``get`` (``put`` tests ``accepted & 63``).
WAIT_SAMPLE_EVERY = 64


class ClosableQueue(Generic[T]):
    """Bounded multi-producer multi-consumer FIFO with close-and-drain semantics."""

    def __init__(self, maxsize: int, *, track: bool = False) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: SimpleQueue[object] = SimpleQueue()
        self._mutex = threading.Lock()
        self._not_full = threading.Condition(self._mutex)
        self._low_water = maxsize - max(1, maxsize // 4)
        self._accepted = 0
        self._producers_waiting = 0
        self._closed = False
        self._held = False
        self._outstanding: dict[T, None] | None = {} if track else None  # insertion order = FIFO
        self.rejected = 0  # tasks (by weight) refused: closed, or full past the caller's timeout
        self._settle_waits: tuple[_SettleWait, ...] = ()  # wait_settled calls under way
        self._stamps: dict[object, float] = {}  # timed hand-offs not taken yet: item → put at
        self._waits = [0] * (len(TIME_BUCKETS) + 1)
        self._wait_total = 0.0

    @property
    def depth(self) -> int:
        """Items accepted and not yet taken."""
        return max(0, self._items.qsize() - self._closed)

    @property
    def accepted(self) -> int:
        """Total weight of every item ever accepted (see ``put``'s ``weight``)."""
        return self._accepted

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        """Hold intake (a drain): from now on ``put`` blocks as if the queue were full, until
        ``release()`` or ``close()`` (then QueueClosed). Consumers are not affected. Never blocks."""
        with self._mutex:
            self._held = True

    def release(self) -> None:
        """End a ``hold()``: producers blocked by it go on."""
        with self._mutex:
            self._held = False
            self._not_full.notify_all()

    def put(self, item: T, timeout: float | None = None, weight: int = 1, *, track: bool = True) -> None:
        """Append ``item``; block while full, up to ``timeout`` seconds (None: until space).

        ``weight`` is how many tasks the item carries (a chunk counts its tasks), added to
        ``accepted``. ``track=False`` keeps a marker out of ``outstanding``. While the queue is
        held (``hold``), ``put`` waits as on a full queue.
        Raises QueueClosed if the queue is (or becomes) closed, QueueFull on timeout.
        """
        with self._mutex:
            if self._closed:
                self.rejected += weight
                raise QueueClosed("queue is closed")
            if self._held or self._items.qsize() >= self.maxsize:
                try:
                    self._wait_for_space(timeout)
                except (QueueClosed, QueueFull):
                    self.rejected += weight
                    raise
            self._accepted += weight
            if track and self._outstanding is not None:
                self._outstanding[item] = None
                if not self._accepted & 63:  # WAIT_SAMPLE_EVERY - 1, as a literal: put is the hot path
                    self._stamps[item] = time.monotonic()
            # Inside the mutex, so no item can land after close()'s end marker.
            self._items.put(item)

    def _wait_for_space(self, timeout: float | None) -> None:
        """Wait (holding the mutex between checks) until the put may go on: not held, and, once the
        queue was seen full, drained to the low-water mark."""
        end = None if timeout is None else time.monotonic() + timeout
        self._producers_waiting += 1
        try:
            room = self._items.qsize() < self.maxsize  # here only because held: no need to wait for low water
            while not self._closed:
                depth = self._items.qsize()
                if depth >= self.maxsize:
                    room = False
                if not self._held and (room or depth <= self._low_water):
                    break
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    why = "held (draining)" if self._held else f"full ({self.maxsize} items)"
                    raise QueueFull(f"queue stayed {why} for {timeout}s")
                self._not_full.wait(left)
        finally:
            self._producers_waiting -= 1
        if self._closed:
            raise QueueClosed("queue closed while waiting for space")

    def get(self, timeout: float | None = None) -> T:
        """Take the oldest item; block up to ``timeout`` (None: until an item or close).

        Raises QueueClosed once closed and empty; ``queue.Empty`` on timeout.
        """
        item = self._items.get(timeout=timeout)
        stamps = self._stamps
        if stamps and item in stamps:
            self._took(item)
        elif item is _CLOSED:
            self._items.put(_CLOSED)  # let the next consumer see it too
            raise QueueClosed("queue is closed and drained")
        if self._producers_waiting and self._items.qsize() <= self._low_water:
            with self._mutex:
                self._not_full.notify()
        return item  # type: ignore[return-value]

    def _took(self, item: object) -> None:
        """``item``, stamped at its ``put``, was taken: count its wait (measured before the mutex
        is taken, so a busy mutex delays the count, never changes it)."""
        put_at = self._stamps.pop(item, None)
        if put_at is None:
            return  # taken back meanwhile (take_all)
        waited = time.monotonic() - put_at
        with self._mutex:
            self._waits[bisect_left(TIME_BUCKETS, waited)] += 1
            self._wait_total += waited

    def waits(self) -> Histogram:
        """The timed hand-offs' waits from ``put`` to ``get`` (one in ``WAIT_SAMPLE_EVERY``)."""
        with self._mutex:
            return Histogram(tuple(self._waits), self._wait_total)

    def close(self) -> None:
        """Stop intake now; consumers drain what was accepted, then get QueueClosed."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._items.put(_CLOSED)
            self._not_full.notify_all()

    def take_all(self) -> list[T]:
        """Remove and return every item not yet taken (for handing work back). Non-blocking."""
        taken: list[T] = []
        saw_end = False
        while True:
            try:
                item = self._items.get_nowait()
            except Empty:
                break
            if item is _CLOSED:
                saw_end = True
                continue
            taken.append(item)  # type: ignore[arg-type]
        with self._mutex:
            self._stamps.clear()  # taken back, never got: not timed
            if saw_end:
                self._items.put(_CLOSED)
            self._not_full.notify_all()
        return taken

    def settle(self, item: T) -> None:
        """A consumer is done with ``item`` (tracking queues): it leaves ``outstanding``."""
        self._outstanding.pop(item, None)  # type: ignore[union-attr]
        if self._settle_waits:  # someone waits in wait_settled: one look otherwise
            for wait in self._settle_waits:
                wait.settled(item)

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Block until every item accepted before this call is settled (tracking queues): taken
        and finished, or taken back. False on timeout. Wakes no consumer: the settle of the last
        of those items ends the wait (unlike markers that every consumer must meet)."""
        wait = _SettleWait()
        with self._mutex:  # no put lands between the snapshot and the registration
            self._settle_waits = (*self._settle_waits, wait)
            items = list(self._outstanding or ())
        try:
            wait.start(items, self._outstanding or {})
            return wait.done.wait(timeout)
        finally:
            with self._mutex:
                self._settle_waits = tuple(w for w in self._settle_waits if w is not wait)

    def outstanding(self) -> list[T]:
        """Every tracked item accepted and not yet settled (queued, or held by a consumer), in
        the order they were accepted."""
        with self._mutex:
            return list(self._outstanding or ())


class _SettleWait:
    """One ``wait_settled`` call: the items it waits for, and the event the last settle sets."""

    __slots__ = ("pending", "done")

    def __init__(self) -> None:
        self.pending: set[object] | None = None  # None until the snapshot is taken
        self.done = threading.Event()

    def start(self, items: Sequence[object], outstanding: Container[object]) -> None:
        """Wait for ``items``, less those settled meanwhile (settle pops before it tells us)."""
        pending = self.pending = set(items)
        for item in items:
            if item not in outstanding:
                pending.discard(item)
        if not pending:
            self.done.set()

    def settled(self, item: object) -> None:
        pending = self.pending
        if pending is not None and item in pending:
            pending.discard(item)
            if not pending:
                self.done.set()
