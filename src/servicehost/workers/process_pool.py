"""ProcessPool: CPU-bound tasks in worker processes, started with "spawn" on every OS.

One parent thread per child process (``<name>-<i>``) takes tasks from one bounded
:class:`~servicehost.workers.queues.ClosableQueue`, sends each to its child over a pipe and
waits for either the result or the child's sentinel. So the parent always knows which task
each child holds: its heartbeat (``busy_since``) is kept in the parent, and a child that dies
(``kill -9``, a segfault, ``os._exit``) is noticed at once. Its task is reported failed
(:class:`WorkerDied`, logged and counted; never lost silently) and a new child replaces it.

Rules for tasks, as "spawn" requires on every OS:

* the function must be importable by name: a module-level function (no lambda, no closure,
  no method of a local class), in a module the child can import. Arguments and results must be
  picklable. ``submit`` pickles at once, so a task that cannot be sent raises ``TypeError`` in
  the caller, not later in a worker;
* the child re-imports the main module: guard a script's entry point with
  ``if __name__ == "__main__":`` (``servicehost.main(...)`` scripts already do);
* a task's exception comes back pickled, with the child's traceback as its ``__cause__``
  (:class:`RemoteTraceback`); one that cannot be pickled becomes a ``RuntimeError`` naming it.

Signals: children ignore SIGINT and SIGTERM (``SIG_IGN``, set first thing in the child). A
Ctrl-C on the terminal, or systemd's SIGTERM to the whole control group, reaches every child;
only the parent acts on it, and stops its children in order: on ``drain`` each idle child gets
a stop message and exits; at the deadline the children still busy get ``terminate()`` (final on
Windows; on POSIX it is SIGTERM, which they ignore) and then ``kill()`` (SIGKILL).

Metrics: what a child does comes back through its result pipe — each reply says how its task
ended, and the parent counts it (no files shared between processes, as ``prometheus_client``'s
multiprocess mode needs). The records a child logs are counted by level in the child and sent
before the reply that follows them (``_LOG_COUNTS``), into the parent's ``logs.MESSAGES``.

Start-up: the children start in the constructor, in parallel and without blocking it (each
parent thread starts its own child and waits for its hello). ``wait_ready()`` blocks until all
are up and raises if the ``initializer`` failed. A failing initializer (or a child that dies
while starting) breaks the pool: it takes no more tasks, instead of restarting children in a loop.

The interpreter: children run ``sys.executable`` unless it is not a Python (``pythonservice.exe``
under the Windows SCM, a frozen app); then pass ``executable="C:/Python311/python.exe"``, or the
pool looks for ``python.exe`` / ``bin/python3`` in ``sys.exec_prefix``. (Setting the spawn
executable is process-wide in ``multiprocessing``; the pool sets it only around its own starts.)

At interpreter exit, children of a pool that was never drained are killed, so that
``multiprocessing``'s exit handler (which joins every child) cannot hang on one.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.spawn
import multiprocessing.util  # first: its exit handler must be registered before ours (LIFO)
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

from .. import logs
from ..errors import QueueClosed, error_message
from ..stopping import Deadline
from ..components import Beat, Counters, HandBack, Measures, Unfinished
from ._supervision import GatedIntake, PauseGate, WorkerStats, describe, sum_counters, sum_measures
from ._tasks import Batch, Claim, Result, not_run, report_unfinished, take_back, tell_waiter
from .queues import ClosableQueue

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("servicehost.workers")
_monotonic = time.monotonic
_CTX = multiprocessing.get_context("spawn")
_SPAWN_LOCK = threading.Lock()  # the spawn executable is process-wide: set it only around a start
_SINGLE, _CHUNK = -1, 0  # the offset of a single task; the kind of a chunk on the wire
_STOP = b""  # the stop message to an idle child
_LOG_COUNTS = b"L"  # + a pickled {level: records}: what a child logged since its last reply (a pickle starts b"\x80")
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_TERMINATE_GRACE = 0.1  # between terminate() and kill() at the deadline
_REAP_WAIT = 5.0  # hang guard: an idle child told to stop exits in milliseconds
_wait = multiprocessing.connection.wait


class WorkerDied(ChildProcessError):
    """The worker process running a task ended before returning its result: it was killed,
    crashed, or was terminated at the stop deadline. Raised to the task's waiter."""


class RemoteTraceback(Exception):
    """The traceback of a task's exception in the worker process (set as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _Slot:
    """One child process and the parent thread that feeds it."""

    __slots__ = ("stats", "proc", "conn", "pid", "tasks", "ready", "thread")

    def __init__(self, name: str) -> None:
        self.stats = WorkerStats(name)
        self.proc: Any = None  # multiprocessing Process, or None between two children
        self.conn: Any = None  # the parent's end of the pipe
        self.pid: int | None = None
        self.tasks = 0  # hand-offs to the current child (for max_tasks_per_child)
        self.ready = threading.Event()  # the first child said hello (or could not start)
        self.thread: threading.Thread | None = None


_LIVE: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


class ProcessPool(GatedIntake):
    """A fixed number of worker processes; a :class:`~servicehost.workers.Component`.

    ``queue_size`` bounds the hand-offs waiting (a ``map`` chunk counts once): producers block
    while it is full. ``max_tasks_per_child`` replaces a child after that many hand-offs (a
    chunk is one), to bound leaks in native code. ``on_unfinished(tasks)`` receives, at a stop
    deadline, the ``(fn, args)`` pairs that never started.
    """

    def __init__(
        self,
        processes: int = 2,
        *,
        name: str = "processes",
        queue_size: int = 256,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        executable: str | os.PathLike[str] | None = None,
        on_unfinished: HandBack | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"{name}: processes must be >= 1, got {processes}")
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError(f"{name}: max_tasks_per_child must be >= 1 or None, got {max_tasks_per_child}")
        self.name = name
        self.processes = processes
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.max_tasks_per_child = max_tasks_per_child
        self.on_unfinished = on_unfinished
        self.executable = _resolve_executable(executable)
        if initializer is not None:
            self._pickle((initializer, self.initargs), "initializer", initializer)
        # Each hand-off travels as a one-element claim: at a deadline the drain takes back every
        # hand-off no child has started, even one a parent thread has just taken off the queue.
        self._queue: ClosableQueue[Claim] = ClosableQueue(queue_size, track=True)
        self._intake = self._queue
        self._not_run = 0
        self._hand_back_lock = threading.Lock()
        self._gate = PauseGate()
        self._terminating = False  # the deadline passed: children are being killed, not replaced
        self._broken: BaseException | None = None
        self._broken_lock = threading.Lock()
        self._deadline = Deadline.never()
        self._slots = [_Slot(f"{name}-{i}") for i in range(processes)]
        _LIVE.add(self)
        for slot in self._slots:
            slot.thread = threading.Thread(target=self._work, args=(slot,), name=slot.stats.name, daemon=True)
            slot.thread.start()

    # -- intake ---------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> None:
        """Queue ``fn(*args)`` in a worker process, fire-and-forget (a failure is logged and
        counted). Blocks while the queue is full (up to ``timeout``).

        Raises TypeError if the task cannot be pickled, QueueClosed after ``close()``, QueueFull
        on timeout."""
        self._check_open()
        payload = self._pickle((_SINGLE, fn, args), "task", fn)
        self._queue.put(Claim(((fn, args, payload, None, _SINGLE, 1),), fn, None, _SINGLE), timeout)

    def submit_result(self, fn: Callable[..., R], *args: Any, timeout: float | None = None) -> Result[R]:
        """Queue ``fn(*args)`` and return a :class:`~servicehost.workers.thread_pool.Result`.

        Its ``result()`` re-raises the task's exception, or :class:`WorkerDied`."""
        self._check_open()
        result: Result[R] = Result()
        payload = self._pickle((_SINGLE, fn, args), "task", fn)
        self._queue.put(Claim(((fn, args, payload, result, _SINGLE, 1),), fn, result, _SINGLE), timeout)
        return result

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunksize: int | None = None,
        timeout: float | None = None,
    ) -> list[R]:
        """``[fn(x) for x in items]`` in the worker processes, in order; chunks of ``chunksize``
        items travel together (default: about four chunks per process). Raises the first task
        error. ``timeout`` bounds the whole call (queueing and waiting)."""
        self._check_open()
        seq = items if isinstance(items, Sequence) else list(items)
        deadline = Deadline.after(timeout)
        if chunksize is None:
            chunksize = max(1, -(-len(seq) // (self.processes * 4)))
        it = iter(seq)
        chunks = []
        while chunk := list(islice(it, chunksize)):
            chunks.append(chunk)
        payloads = [self._pickle((_CHUNK, fn, chunk), "task", fn) for chunk in chunks]
        batch = Batch(len(seq), len(chunks))
        offset = 0
        for chunk, payload in zip(chunks, payloads):
            hand_off = (fn, chunk, payload, batch, offset, len(chunk))
            self._queue.put(Claim((hand_off,), fn, batch, offset), deadline.remaining(), len(chunk))
            offset += len(chunk)
        return batch.wait(deadline, f"{self.name}: map not finished in {timeout}s")

    def _check_open(self) -> None:
        if self._broken is not None:
            raise RuntimeError(f"{self.name}: broken, a worker process could not start: {self._broken!r}") \
                from self._broken

    def _pickle(self, obj: Any, what: str, fn: Any) -> bytes:
        try:
            return pickle.dumps(obj, _PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                f"{self.name}: {what} {describe(fn)} cannot be sent to a worker process ({exc}); "
                "use a module-level function with picklable arguments") from exc

    # -- the parent thread of one child ---------------------------------------------------------
    def _work(self, slot: _Slot) -> None:
        stats = slot.stats
        get, settle = self._queue.get, self._queue.settle
        try:
            self._spawn(slot)
            while True:
                try:
                    claim = get()
                except QueueClosed:
                    return
                if self._gate.paused:
                    self._gate.wait()
                if self._broken is not None:
                    # Nothing will run here any more. A waiter is told now; fire-and-forget work
                    # stays outstanding, for the drain to hand back with the rest.
                    if claim.sink is not None:
                        for item in claim.revoke():
                            self._settle(stats, item, None, self._not_run_error())
                        settle(claim)
                    continue
                stats.current = claim.fn
                started = stats.busy_since = _monotonic()
                try:
                    item = claim.take()
                except IndexError:  # taken back at the stop deadline before a child got it
                    stats.busy_since = None
                    settle(claim)
                    continue
                fn, _, payload, _, _, count = item
                try:
                    reply = self._call(slot, payload, fn)
                except WorkerDied as exc:
                    self._settle(stats, item, None, exc)
                    if not (self._queue.closed or self._terminating or self._broken):
                        self._spawn(slot)  # replace it now, not on the next task's time
                else:
                    stats.sample(started, count)
                    self._settle(stats, item, reply, None)
                    slot.tasks += 1
                    if self.max_tasks_per_child and slot.tasks >= self.max_tasks_per_child:
                        self._retire(slot)
                        if not self._queue.closed:
                            self._spawn(slot)
                settle(claim)
        except BaseException as exc:  # the loop itself broke: never die silently
            logs.worker_crashed(log, self.name, stats.name, exc_info=exc)
            raise
        finally:
            stats.busy_since = None
            self._retire(slot)

    def _spawn(self, slot: _Slot) -> None:
        """Start a child and wait for its hello (or its initializer's failure)."""
        if slot.ready.is_set():  # the slot had a child: this one replaces it
            slot.stats.restarts += 1
        parent_end, child_end = _CTX.Pipe(duplex=True)
        proc = _CTX.Process(target=_child_main, args=(child_end, self.initializer, self.initargs),
                            name=slot.stats.name)
        with _SPAWN_LOCK:
            previous = multiprocessing.spawn.get_executable()
            if self.executable:
                _CTX.set_executable(self.executable)
            try:
                proc.start()
            except OSError as exc:  # the interpreter cannot be run, no memory, no pids left
                child_end.close()
                parent_end.close()
                self._break(slot, exc)
                return
            finally:
                if self.executable:
                    _CTX.set_executable(previous)
        child_end.close()
        slot.proc, slot.conn, slot.pid, slot.tasks = proc, parent_end, proc.pid, 0
        hello: Any = None
        if parent_end in _wait([parent_end, proc.sentinel]):
            try:
                hello = pickle.loads(parent_end.recv_bytes())
            except (EOFError, OSError):
                hello = None
        if hello == ("ready",):
            slot.ready.set()
            return
        if hello is not None and hello[0] == "init_failed":
            error = _with_traceback(hello[1], hello[2])
        else:
            error = WorkerDied(f"{slot.stats.name}: worker process exited with code {self._reap(slot)} while starting")
        self._break(slot, error)

    def _break(self, slot: _Slot, error: BaseException) -> None:
        with self._broken_lock:
            first = self._broken is None
            if first:
                self._broken = error
        if first:
            logs.process_pool_broken(log, self.name, slot.stats.name, exc_info=error)
        self._queue.close()  # queued tasks are failed by the threads as they take them
        for s in self._slots:
            s.ready.set()

    def _call(self, slot: _Slot, payload: bytes, fn: Any) -> Any:
        """Run one hand-off in the slot's child; return its reply or raise WorkerDied."""
        if slot.proc is None or _wait([slot.proc.sentinel], 0):
            if slot.proc is not None:  # it died while idle (killed): say so, then replace it
                pid, code = slot.pid, self._reap(slot)
                logs.worker_process_died(log, self.name, slot.stats.name, pid, code, "while idle; replaced")
            self._spawn(slot)
            if self._broken is not None:
                raise WorkerDied(f"{self.name}: not run, the pool is broken: {self._broken!r}")
        conn, proc = slot.conn, slot.proc
        try:
            conn.send_bytes(payload)
            while conn in _wait([conn, proc.sentinel]):
                data = conn.recv_bytes()
                if data[:1] == _LOG_COUNTS:  # what the child logged while running it; the reply follows
                    logs.add_messages(pickle.loads(data[1:]))
                    continue
                try:
                    return pickle.loads(data)
                except Exception as exc:  # e.g. the result's class cannot be imported here
                    return (False, exc, "")
        except (EOFError, OSError):
            pass  # the child is gone: the sentinel tells how
        pid, code = slot.pid, self._reap(slot)
        if self._terminating:
            raise WorkerDied(f"{self.name}: worker process {pid} terminated at the stop deadline "
                             f"while running {describe(fn)}")
        logs.worker_process_died(log, self.name, slot.stats.name, pid, code,
                                 f"while running {describe(fn)}; the task is reported failed and the process replaced")
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise WorkerDied(f"{self.name}: worker process {pid} died ({how}) while running {describe(fn)}")

    def _settle(self, stats: WorkerStats, item: tuple[Any, ...], reply: Any, error: BaseException | None) -> None:
        """Count the outcome, mark the worker idle, then release the waiters."""
        fn, _, _, sink, offset, count = item
        remote = error is None  # the task itself raised (not a death, not "never run")
        if offset == _SINGLE:
            ok = remote and reply[0] is True
            if ok:
                stats.completed += 1
            else:
                stats.failed += 1
                error = error or _with_traceback(reply[1], reply[2])
                stats.error(error)
            stats.busy_since = None
            if sink is not None:
                sink._set(reply[1] if ok else None, None if ok else error)
            elif not ok and remote:  # a death was logged already; "never run" is reported by drain
                logs.task_failed(log, self.name, describe(fn), exc_info=error)
            return
        outcomes = reply if isinstance(reply, list) else [None] * count
        whole = error if error is not None else (
            None if isinstance(reply, list) else _with_traceback(reply[1], reply[2]))
        results, errors, failed = sink.results, [], 0
        for i, outcome in enumerate(outcomes, offset):
            if whole is None and outcome[0] is True:
                results[i] = outcome[1]
            else:
                failed += 1
                if whole is None:
                    errors.append(_with_traceback(outcome[1], outcome[2]))
        if whole is not None:
            errors.append(whole)
        if errors:
            stats.error(errors[-1])
        stats.failed += failed
        stats.completed += count - failed
        stats.busy_since = None
        if errors:
            with sink.lock:
                sink.errors.extend(errors)
        sink.chunk_done()

    def _not_run_error(self, count: int = 1) -> BaseException:
        if self._broken is not None:
            error: BaseException = WorkerDied(f"{self.name}: not run, the pool is broken: {self._broken!r}")
            error.__cause__ = self._broken
            return error
        return not_run(self.name, count)

    def _reap(self, slot: _Slot) -> int | None:
        """Forget the slot's dead (or dying) child; return its exit code."""
        proc, slot.proc, slot.pid = slot.proc, None, None
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        if proc is None:
            return None
        proc.join(_REAP_WAIT)
        return proc.exitcode  # type: ignore[no-any-return]

    def _retire(self, slot: _Slot) -> None:
        """Stop the slot's child gracefully: the stop message, then terminate/kill if it lingers."""
        proc = slot.proc
        if proc is None:
            return
        try:
            slot.conn.send_bytes(_STOP)
        except OSError:
            pass  # already gone: nothing to tell it
        if not _wait([proc.sentinel], self._deadline.remaining(_REAP_WAIT)):
            _end_processes([proc])
        self._reap(slot)

    # -- control --------------------------------------------------------------------------------
    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every first child is up (``initializer`` done). Raises RuntimeError if
        one could not start (the pool is broken), TimeoutError after ``timeout`` seconds."""
        deadline = Deadline.after(timeout)
        for slot in self._slots:
            if not slot.ready.wait(deadline.remaining()):
                raise TimeoutError(f"{self.name}: worker processes not ready after {timeout}s")
        self._check_open()

    def drain(self, deadline: Deadline) -> Unfinished | None:
        """Close; run what was accepted until ``deadline``; stop the children. At the deadline:
        terminate (then kill) the children still busy, fail their waiters with WorkerDied,
        hand back what never started, and report both."""
        self._deadline = deadline
        self.close()
        for slot in self._slots:
            assert slot.thread is not None
            slot.thread.join(deadline.remaining())
        with self._hand_back_lock:  # one drain at a time takes back and hands over
            # Every hand-off no child has started is taken back now, for good: queued ones, and one a
            # parent thread has just taken off the queue.
            never_started: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
            to_waiters = 0
            for _, hand_offs, owned in take_back(self._queue):
                for fn, args, _, sink, offset, count in hand_offs:
                    self._not_run += count
                    if sink is None:
                        never_started.extend([(fn, args)] if offset == _SINGLE else [(fn, (x,)) for x in args])
                    else:
                        to_waiters += count
                        tell_waiter(sink, self._not_run_error(count), chunk_owner=owned)
            running = [s for s in self._slots if s.stats.busy_since is not None]
            running_what = tuple(describe(s.stats.current) for s in running)
            if running or any(s.thread is not None and s.thread.is_alive() for s in self._slots):
                self._terminating = True
                procs = [s.proc for s in self._slots if s.proc is not None]
                ended = _end_processes(procs)
                if ended:
                    logs.process_pool_terminated(log, self.name, ended)
                for slot in self._slots:
                    assert slot.thread is not None
                    slot.thread.join(_REAP_WAIT)  # each wakes on its child's sentinel and exits
            return report_unfinished(self.name, "tasks", never_started, self.on_unfinished, running_what,
                                     to_waiters=to_waiters)

    def _abandon(self) -> None:
        """At interpreter exit: kill the children of a pool that was not drained."""
        self._terminating = True
        self._queue.close()
        procs = [s.proc for s in self._slots if s.proc is not None]
        for proc in procs:
            _signal(proc, "kill")

    # -- observation ------------------------------------------------------------------------------
    def counters(self) -> Counters:
        return sum_counters(self.name, self._queue.accepted, [s.stats for s in self._slots],
                            not_run=self._not_run, queue_capacity=self._queue.maxsize)

    def measures(self) -> Measures:
        return sum_measures([s.stats for s in self._slots], self._queue)

    def beats(self) -> Iterator[Beat]:
        """One per child: busy since when (tracked in the parent), running which function."""
        for s in self._slots:
            busy_since = s.stats.busy_since
            yield Beat(self.name, s.stats.name, busy_since, describe(s.stats.current) if busy_since else "")

    def pids(self) -> list[int | None]:
        """The process id of each child (None while a slot has none, e.g. being replaced)."""
        return [s.pid for s in self._slots]


# -- helpers -------------------------------------------------------------------------------------
def _resolve_executable(executable: str | os.PathLike[str] | None) -> str | None:
    """The interpreter for the children; None: ``sys.executable`` is fine."""
    if executable is not None:
        path = os.fspath(executable)
        if not os.path.isfile(path):
            raise ValueError(f"executable {path!r}: no such file (give the path of a python interpreter)")
        return path
    exe = sys.executable or ""
    base = os.path.basename(exe).lower()
    if exe and os.path.isfile(exe) and not base.startswith("pythonservice") and not getattr(sys, "frozen", False):
        return None
    for candidate in (os.path.join(sys.exec_prefix, "python.exe"), os.path.join(sys.exec_prefix, "bin", "python3")):
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"sys.executable is {exe!r}, not a python interpreter the worker processes can run; "
                     "pass executable='path/to/python'")


def _with_traceback(exc: BaseException, text: str) -> BaseException:
    if text:
        exc.__cause__ = RemoteTraceback(text)
    return exc


def _signal(proc: Any, how: str) -> None:
    try:
        getattr(proc, how)()
    except (OSError, ValueError, AttributeError):
        pass  # it ended and was reaped meanwhile: nothing left to signal


def _end_processes(procs: list[Any]) -> int:
    """terminate() every live one, then kill() those still alive; return how many were alive."""
    alive = [p for p in procs if not _wait([p.sentinel], 0)]
    for proc in alive:
        _signal(proc, "terminate")  # Windows: TerminateProcess, final. POSIX: SIGTERM, ignored by design
    still = _wait_all(alive, _TERMINATE_GRACE)
    for proc in still:
        _signal(proc, "kill")
    _wait_all(still, _REAP_WAIT)
    return len(alive)


def _wait_all(procs: list[Any], timeout: float) -> list[Any]:
    """Wait up to ``timeout`` for every process to end; return those still alive."""
    deadline = Deadline.after(timeout)
    live = list(procs)
    while live:
        if not _wait([p.sentinel for p in live], deadline.remaining()):
            break
        live = [p for p in live if not _wait([p.sentinel], 0)]
    return live


@atexit.register
def _kill_abandoned_children() -> None:
    # Runs before multiprocessing's own exit handler (registered earlier; atexit is LIFO), which
    # joins every child with no timeout: a child ignoring SIGTERM would hang the exit.
    for pool in list(_LIVE):
        pool._abandon()


# -- the child -----------------------------------------------------------------------------------
def _child_main(conn: Any, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
    """A worker process: ignore SIGINT/SIGTERM, initialize, then run tasks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            conn.send_bytes(_dumps(("init_failed", *_portable(exc))))
            return
    conn.send_bytes(_dumps(("ready",)))
    logs.count_records()
    counts = logs.MESSAGES
    reported = dict(counts)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        if data == _STOP:
            return
        reply: Any
        try:
            offset, fn, args = pickle.loads(data)
        except BaseException as exc:  # e.g. the task's module cannot be imported here
            reply = (False, *_portable(exc))
        else:
            if offset == _SINGLE:
                reply = _run(fn, args)
            else:
                reply = [_run(fn, (x,)) for x in args]
        try:
            if counts != reported:
                conn.send_bytes(_LOG_COUNTS + pickle.dumps({k: n - reported[k] for k, n in counts.items()}, _PROTOCOL))
                reported = dict(counts)
            conn.send_bytes(_dumps(reply))
        except (EOFError, OSError):
            return


def _run(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        return (True, fn(*args))
    except BaseException as exc:  # a task's error never ends the worker
        return (False, *_portable(exc))


def _portable(exc: BaseException) -> tuple[BaseException, str]:
    """The exception (or a stand-in that survives pickling) and its traceback text."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc, _PROTOCOL))
    except Exception:
        return RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {error_message(exc)}"), text
    return exc, text


def _dumps(reply: Any) -> bytes:
    try:
        return pickle.dumps(reply, _PROTOCOL)
    except Exception as exc:  # a result that cannot be pickled fails its task, not the worker
        if isinstance(reply, list):
            return pickle.dumps([_picklable(r) for r in reply], _PROTOCOL)
        return pickle.dumps(_picklable(reply, exc), _PROTOCOL)


def _picklable(reply: tuple[Any, ...], error: Exception | None = None) -> tuple[Any, ...]:
    if error is None:
        try:
            pickle.dumps(reply, _PROTOCOL)
            return reply
        except Exception as exc:
            error = exc
    return (False, TypeError(f"the task's result cannot be sent back to the parent: {error}"), "")
