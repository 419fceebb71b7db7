"""Task plumbing the pools share: how accepted work travels, who owns each task, and the tail
that reports and hands back what never ran at a stop deadline.

The rule every model keeps (ThreadPool, Pipeline, Dispatcher, ProcessPool): when the stop report
is made, every accepted task is done, running (counted), or never started (counted, and given
back to exactly one owner). A task that never started goes back

* to its **waiter**, when someone waits on it (``submit_result``'s :class:`Result`, ``map``):
  the wait raises :class:`~servicehost.errors.QueueClosed` ("not run"), and the task is *not*
  also passed to ``on_unfinished`` — the waiter owns the retry, so nothing runs twice;
* to the component's ``on_unfinished(tasks)`` hook otherwise (fire-and-forget work), so that a
  durable source can take it back. Without a hook it is counted and logged, nothing more.

A task given back is never run afterwards: the worker and the drain take tasks out of the same
:class:`Claim` with one atomic operation each, so each task is taken exactly once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import QueueClosed
from ..stopping import Deadline
from ..components import HandBack, Unfinished

if TYPE_CHECKING:
    from .queues import ClosableQueue

T = TypeVar("T")


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
        """Block up to ``timeout`` seconds for the value; re-raise the task's exception
        (:class:`~servicehost.errors.QueueClosed` if the pool stopped before it ran)."""
        if not self._latch.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("task not finished")
        self._latch.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]


class Batch:
    """Shared by the chunks of one ``map`` call: results in order, and a latch for the last.

    ``chunk_done`` is called exactly once per chunk, by whoever held the chunk last: the
    worker that took it, or the drain that took it out of the queue."""

    __slots__ = ("results", "errors", "pending", "lock", "latch")

    def __init__(self, size: int, chunks: int) -> None:
        self.results: list[Any] = [None] * size
        self.errors: list[BaseException] = []
        self.pending = chunks
        self.lock = threading.Lock()
        self.latch = threading.Lock()
        self.latch.acquire()

    def fail(self, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)

    def wait(self, deadline: Deadline, what: str) -> list[Any]:
        """Block until every chunk is done (up to ``deadline``: TimeoutError naming ``what``);
        the results in order, or raise the first task error."""
        if self.pending:
            left = deadline.remaining()
            if not self.latch.acquire(timeout=-1 if left is None else left):
                raise TimeoutError(what)
        if self.errors:
            raise self.errors[0]
        return self.results

    def chunk_done(self) -> None:
        with self.lock:
            self.pending -= 1
            last = self.pending == 0
        if last:
            self.latch.release()


class Claimable(deque):  # type: ignore[type-arg]
    """Accepted tasks on their way to a worker, each taken exactly once.

    The worker takes tasks from the left (``take``, i.e. ``popleft``); a drain at the deadline
    takes what is left from the right (``revoke``). Both are single atomic deque operations, so
    each task is taken by exactly one of them: it runs, or it is given back — never both, never
    neither. Identity-hashed, so a queue can track the claims it accepted and not yet settled.
    """

    __slots__ = ()
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:  # identity, as the hash
        return self is other

    take = deque.popleft

    def revoke(self) -> list[Any]:
        """Take every task not taken yet (in order); from now on ``take`` raises IndexError."""
        taken = []
        pop = self.pop
        while True:
            try:
                taken.append(pop())
            except IndexError:
                break
        taken.reverse()
        return taken


class One(list):  # type: ignore[type-arg]
    """A single task's claim: its one element says everything (a pool's ``(fn, args, sink)``, a
    pipeline stage's item). A list, not a deque: one task needs no block of 64 slots (72 bytes
    against 760 a queued task, and a third cheaper to build). ``take`` and ``revoke`` are each one
    atomic ``pop``, so the one task is taken exactly once, as from a :class:`Claimable`."""

    __slots__ = ()
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:  # identity, as the hash
        return self is other

    take = list.pop

    def revoke(self) -> list[Any]:
        """The task, unless it was taken; from now on ``take`` raises IndexError."""
        try:
            return [self.pop()]
        except IndexError:
            return []


class Claim(Claimable):
    """A chunk's claim (or a task that travels with its own record, as in the ProcessPool):
    ``fn``/``sink``/``offset`` say what to do with the tasks — the callable, who waits (None, a
    :class:`Result` or a :class:`Batch`) and the chunk's first index in its batch."""

    __slots__ = ("fn", "sink", "offset")

    def __init__(self, tasks: Sequence[Any], fn: Any = None, sink: Any = None, offset: int = 0) -> None:
        deque.__init__(self, tasks)
        self.fn, self.sink, self.offset = fn, sink, offset


def take_back(queue: ClosableQueue[Any]) -> Iterator[tuple[Claimable | One, list[Any], bool]]:
    """At a deadline: every accepted claim of a tracking ``queue`` with the tasks no worker has
    started, taken for good — ``(claim, tasks, owned)``. ``owned``: the claim was still queued, so
    no worker will ever see it and the caller closes it for its waiter (``tell_waiter``'s
    ``chunk_owner``); the others are held by workers, which close them when their task ends."""
    owned = {c for c in queue.take_all() if isinstance(c, (Claimable, One))}
    for claim in queue.outstanding():
        yield claim, claim.revoke(), claim in owned
        if claim in owned:
            queue.settle(claim)


def not_run(component: str, count: int = 1) -> QueueClosed:
    return QueueClosed(f"{component}: stopped before {count} task(s) ran")


def tell_waiter(sink: Any, error: BaseException, *, chunk_owner: bool) -> None:
    """Fail the waiter of tasks that never ran. ``chunk_owner``: the caller took the whole chunk
    out of the queue, so it also closes the chunk for its batch."""
    if isinstance(sink, Result):
        sink._set(None, error)
    elif isinstance(sink, Batch):
        sink.fail(error)
        if chunk_owner:
            sink.chunk_done()


def report_unfinished(
    component: str,
    kind: str,
    never_started: list[Any],
    on_unfinished: HandBack | None,
    running_what: Sequence[str],
    *,
    to_waiters: int = 0,
    queued_by_stage: Mapping[str, int] | None = None,
) -> Unfinished | None:
    """The tail of every drain (called under the component's hand-back lock, so that two drains
    never hand over at once): give ``never_started`` (fire-and-forget tasks, already taken out
    for good) to ``on_unfinished`` once, and report them with the ``to_waiters`` tasks whose
    waiters were told, and what still runs. None when nothing is left."""
    queued = len(never_started) + to_waiters
    if not queued and not running_what:
        return None
    handed_back = False
    if never_started and on_unfinished is not None:
        on_unfinished(never_started)
        handed_back = True
    return Unfinished(component, kind, queued, len(running_what), handed_back, tuple(running_what),
                      to_waiters, queued_by_stage if queued_by_stage is not None else {})
