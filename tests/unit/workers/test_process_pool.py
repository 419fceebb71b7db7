"""ProcessPool with real "spawn" processes and real signals. Timeouts are hang guards only.

The task functions are module-level here so the children can import them by name.
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

import pytest

from servicehost.errors import QueueClosed
from servicehost.stopping import Deadline
from servicehost.components import Component
from servicehost.workers.process_pool import ProcessPool, RemoteTraceback, WorkerDied

GUARD = 60.0  # seconds; a hang guard, never a speed assertion
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

_initialized: str = ""


# -- tasks (run in the children) -----------------------------------------------------------------
def square(x: int) -> int:
    return x * x


def fail(x: int) -> int:
    raise ValueError(f"bad {x}")


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise KeyError(x)
    return x


def slow_square(seconds: float, x: int) -> int:
    time.sleep(seconds)
    return x * x


def pid() -> int:
    return os.getpid()


def unpicklable_result() -> object:
    return threading.Lock()


class Odd(Exception):
    def __init__(self, a: int, b: int) -> None:  # unpicklable the usual way: args mismatch
        super().__init__(f"{a}/{b}")


def raise_odd() -> None:
    raise Odd(1, 2)


def init(value: str) -> None:
    global _initialized
    _initialized = value


def initialized() -> str:
    return _initialized


def init_fails() -> None:
    raise RuntimeError("no database")


# -- helpers ------------------------------------------------------------------------------------
def wait_until(predicate, what: str, timeout: float = GUARD) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"hang guard: {what}")
        time.sleep(0.01)


def busy_pid(pool: ProcessPool) -> int:
    """The pid of the one child running a task right now."""
    wait_until(lambda: any(b.busy_since for b in pool.beats()), "a busy child")
    beats = list(pool.beats())
    index = next(i for i, b in enumerate(beats) if b.busy_since)
    found = pool.pids()[index]
    assert found is not None
    return found


def process_gone(p: int) -> bool:
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def pool():
    with ProcessPool(2, name="shared") as shared:
        shared.wait_ready(GUARD)
        yield shared


# -- results ------------------------------------------------------------------------------------
def test_it_is_a_component_with_one_beat_per_child(pool):
    assert isinstance(pool, Component)
    assert [b.worker for b in pool.beats()] == ["shared-0", "shared-1"]
    pids = pool.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_map_keeps_order_and_results_come_back(pool):
    assert pool.map(square, range(1000)) == [x * x for x in range(1000)]
    assert pool.map(square, range(10), chunksize=3) == [x * x for x in range(10)]
    assert pool.map(square, []) == []
    assert pool.submit_result(slow_square, 0.0, 12).result(GUARD) == 144
    assert pool.submit_result(divmod, 7, 2).result(GUARD) == (3, 1)  # builtins pickle by name


def test_task_errors_come_back_with_the_child_traceback_and_are_counted(pool):
    before = pool.counters().failed
    with pytest.raises(ValueError, match="bad 3") as caught:
        pool.submit_result(fail, 3).result(GUARD)
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "in fail" in str(caught.value.__cause__)
    with pytest.raises(KeyError):
        pool.map(fail_on_seven, range(20), chunksize=4)
    with pytest.raises(RuntimeError, match="Odd: 1/2"):  # not picklable: a stand-in names it
        pool.submit_result(raise_odd).result(GUARD)
    with pytest.raises(TypeError, match="cannot be sent back"):
        pool.submit_result(unpicklable_result).result(GUARD)
    assert pool.counters().failed == before + 4
    assert pool.map(square, [5]) == [25]  # the children are fine


def test_fire_and_forget_failures_are_logged_with_the_remote_traceback(pool, caplog):
    before = pool.counters()
    with caplog.at_level(logging.ERROR, logger="servicehost.workers"):
        pool.submit(fail, 1)
        pool.submit(square, 2)
        wait_until(lambda: pool.counters().completed + pool.counters().failed
                   == before.completed + before.failed + 2, "two tasks done")
    failures = [r for r in caplog.records if getattr(r, "event", "") == "task_failed"]
    assert len(failures) == 1 and "test_process_pool.fail" in failures[0].getMessage()
    assert isinstance(failures[0].exc_info[1].__cause__, RemoteTraceback)


def test_a_task_that_cannot_be_pickled_is_refused_at_once(pool):
    with pytest.raises(TypeError, match="module-level function"):
        pool.submit(lambda: 1)
    with pytest.raises(TypeError, match="cannot be sent"):
        pool.submit_result(square, threading.Lock())


# -- processes and signals ----------------------------------------------------------------------
@posix_only
def test_a_child_killed_with_sigkill_is_replaced_and_its_task_reported_failed(caplog):
    with caplog.at_level(logging.ERROR, logger="servicehost.workers"):
        with ProcessPool(2, name="victims") as pool:
            pool.wait_ready(GUARD)
            doomed = pool.submit_result(slow_square, GUARD, 3)
            victim = busy_pid(pool)
            os.kill(victim, signal.SIGKILL)
            with pytest.raises(WorkerDied, match=r"died \(signal 9\) while running .*slow_square"):
                doomed.result(GUARD)
            wait_until(lambda: None not in pool.pids(), "a replacement")
            assert victim not in pool.pids()
            assert pool.map(square, range(50)) == [x * x for x in range(50)]
            c = pool.counters()
            assert (c.failed, c.in_flight) == (1, 0)
    died = [r for r in caplog.records if getattr(r, "event", "") == "worker_process_died"]
    assert len(died) == 1 and str(victim) in died[0].getMessage()


@posix_only
def test_a_child_killed_while_idle_is_replaced_before_the_next_task():
    with ProcessPool(1, name="idle") as pool:
        pool.wait_ready(GUARD)
        (victim,) = pool.pids()
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        # Wait until it is really dead (a kill is asynchronous): a task handed to a child in
        # its last moments is, rightly, reported failed; that is the other test.
        assert multiprocessing.connection.wait([pool._slots[0].proc.sentinel], GUARD)
        assert pool.submit_result(pid).result(GUARD) not in (victim, None)
        assert pool.counters().failed == 0


@posix_only
def test_children_ignore_sigint_and_sigterm_and_keep_working():
    with ProcessPool(1, name="stubborn") as pool:
        pool.wait_ready(GUARD)
        working = pool.submit_result(slow_square, 0.5, 7)
        child = busy_pid(pool)
        os.kill(child, signal.SIGTERM)
        os.kill(child, signal.SIGINT)
        assert working.result(GUARD) == 49
        assert pool.pids() == [child]
        assert pool.submit_result(pid).result(GUARD) == child


def test_drain_at_the_deadline_terminates_children_and_reports(caplog):
    handed = []
    pool = ProcessPool(2, name="late", on_unfinished=handed.extend)
    pool.wait_ready(GUARD)
    running = [pool.submit_result(slow_square, GUARD, i) for i in range(2)]
    wait_until(lambda: all(b.busy_since for b in pool.beats()), "both children busy")
    children = [p for p in pool.pids() if p is not None]
    queued = pool.submit_result(square, 9)
    pool.submit(square, 10)
    mapped: list[BaseException] = []

    def mapper() -> None:
        try:
            pool.map(square, [1, 2, 3], chunksize=3)
        except BaseException as exc:
            mapped.append(exc)

    t = threading.Thread(target=mapper)
    t.start()
    wait_until(lambda: pool.counters().submitted == 7, "everything queued")
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="servicehost.workers"):
        left = pool.drain(Deadline.after(0.3))
    assert time.monotonic() - began < GUARD
    assert left is not None and left.kind == "tasks"
    assert (left.queued, left.to_waiters, left.running, left.handed_back) == (5, 4, 2, True)
    assert all("slow_square" in what for what in left.running_what)
    # One owner each: the fire-and-forget task is handed back; the waited ones go to their waiters.
    assert handed == [(square, (10,))]
    for result in running:
        with pytest.raises(WorkerDied, match="terminated at the stop deadline"):
            result.result(GUARD)
    with pytest.raises(QueueClosed):
        queued.result(GUARD)
    t.join(GUARD)
    assert len(mapped) == 1 and isinstance(mapped[0], QueueClosed)
    if os.name == "posix":
        wait_until(lambda: all(process_gone(p) for p in children), "children gone")
    assert [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "process_pool_terminated"] \
        == ["late: 2 worker process(es) terminated at the deadline"]


def test_close_stops_intake_and_drain_finishes_accepted_work():
    pool = ProcessPool(2, name="graceful")
    results = [pool.submit_result(slow_square, 0.01, i) for i in range(30)]
    children = pool.pids()
    pool.close()
    with pytest.raises(QueueClosed):
        pool.submit(square, 1)
    assert pool.drain(Deadline.after(GUARD)) is None
    assert [r.result(0) for r in results] == [i * i for i in range(30)]
    assert pool.pids() == [None, None]
    if os.name == "posix":
        assert all(process_gone(p) for p in children if p is not None)


def test_pause_holds_dispatch_until_resume():
    with ProcessPool(1, name="paused") as pool:
        pool.wait_ready(GUARD)
        pool.pause()
        result = pool.submit_result(square, 3)
        time.sleep(0.2)
        assert not result.done()
        pool.resume()
        assert result.result(GUARD) == 9


def test_max_tasks_per_child_replaces_the_child():
    with ProcessPool(1, name="recycled", max_tasks_per_child=2) as pool:
        pids = [pool.submit_result(pid).result(GUARD) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_initializer_runs_in_each_child_and_a_failing_one_breaks_the_pool(caplog):
    with ProcessPool(2, name="init", initializer=init, initargs=("ready",)) as pool:
        pool.wait_ready(GUARD)
        assert pool.map(initialized, [], chunksize=1) == []
        assert {pool.submit_result(initialized).result(GUARD) for _ in range(4)} == {"ready"}
    with caplog.at_level(logging.CRITICAL, logger="servicehost.workers"):
        broken = ProcessPool(2, name="broken", initializer=init_fails)
        with pytest.raises(RuntimeError, match="could not start"):
            broken.wait_ready(GUARD)
        with pytest.raises(RuntimeError, match="no database"):
            broken.submit(square, 1)
        assert broken.drain(Deadline.after(GUARD)) is None
    logged = [r for r in caplog.records if getattr(r, "event", "") == "process_pool_broken"]
    assert len(logged) == 1 and "no database" in str(logged[0].exc_info[1])


def test_the_interpreter_can_be_given_and_a_wrong_one_is_refused():
    with ProcessPool(1, name="exe", executable=sys.executable) as pool:
        assert pool.submit_result(square, 4).result(GUARD) == 16
    with pytest.raises(ValueError, match="no such file"):
        ProcessPool(1, executable="/no/such/python")
