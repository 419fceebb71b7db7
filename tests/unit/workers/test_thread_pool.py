import logging
import threading
import time

import pytest

from servicehost.errors import QueueClosed
from servicehost.stopping import Deadline
from servicehost.workers.thread_pool import ThreadPool


def test_every_submitted_task_runs_once():
    seen = []
    lock = threading.Lock()

    def record(x):
        with lock:
            seen.append(x)

    with ThreadPool(4) as pool:
        for i in range(500):
            pool.submit(record, i)
        pool.submit_many(record, range(500, 5000), chunksize=64)
    assert sorted(seen) == list(range(5000))
    c = pool.counters()
    assert (c.submitted, c.completed, c.failed, c.in_flight, c.queue_depth) == (5000, 5000, 0, 0, 0)
    assert c.latency_p50 is not None


def test_map_keeps_order_and_results_come_back():
    with ThreadPool(3) as pool:
        assert pool.map(lambda x: x * x, range(1000)) == [x * x for x in range(1000)]
        assert pool.map(str, []) == []
        assert pool.submit_result(divmod, 7, 2).result(5) == (3, 1)


def test_a_task_error_never_kills_its_worker(caplog):
    def boom(x):
        if x % 10 == 0:
            raise RuntimeError(f"bad {x}")

    with caplog.at_level(logging.ERROR, logger="servicehost.workers"):
        with ThreadPool(2) as pool:
            pool.submit_many(boom, range(100), chunksize=7)
            for i in range(100, 110):
                pool.submit(boom, i)
            assert pool.join(5)
            # the same two threads are still there and still working
            assert all(t.is_alive() for t in pool._threads)
            assert pool.map(lambda x: x + 1, [1, 2]) == [2, 3]
    c = pool.counters()
    assert c.failed == 11 and c.completed == 110 - 11 + 2
    failures = [r for r in caplog.records if getattr(r, "event", "") == "task_failed"]
    assert len(failures) == 11 and failures[0].exc_info is not None  # logged with traceback
    assert failures[0].event_id == 3001


def test_waited_errors_are_raised_to_the_waiter_and_counted():
    with ThreadPool(2) as pool:
        r = pool.submit_result(int, "x")
        with pytest.raises(ValueError):
            r.result(5)
        with pytest.raises(ZeroDivisionError):
            pool.map(lambda x: 1 / x, [1, 0, 2])
    assert pool.counters().failed == 2


def test_backpressure_blocks_the_producer_while_the_queue_is_full():
    gate = threading.Event()
    pool = ThreadPool(1, queue_size=2)
    pool.submit(gate.wait)  # occupies the worker
    time.sleep(0.05)
    pool.submit(lambda: None)
    pool.submit(lambda: None)  # queue now full
    blocked = threading.Event()
    returned = threading.Event()

    def producer():
        blocked.set()
        pool.submit(lambda: None)
        returned.set()

    threading.Thread(target=producer, daemon=True).start()
    assert blocked.wait(5)
    assert not returned.wait(0.2)  # still blocked: backpressure
    gate.set()
    assert returned.wait(5)
    assert pool.shutdown(5) is None
    assert pool.counters().completed == 4


def test_close_stops_intake_and_drain_finishes_accepted_work():
    done = []
    pool = ThreadPool(2)
    pool.submit_many(lambda x: (time.sleep(0.001), done.append(x)), range(200))
    pool.close()
    with pytest.raises(QueueClosed):
        pool.submit(print)
    assert pool.drain(Deadline.after(30)) is None
    assert len(done) == 200


def test_drain_at_the_deadline_reports_and_hands_back_what_never_started():
    release = threading.Event()
    handed = []
    pool = ThreadPool(2, on_unfinished=handed.extend)
    pool.submit(release.wait)
    pool.submit(release.wait)
    time.sleep(0.05)
    pool.submit_many(print, ["a", "b", "c"], chunksize=2)
    pool.submit(print, "d")
    left = pool.drain(Deadline.after(0.1))
    release.set()
    assert left is not None
    assert (left.queued, left.running, left.handed_back) == (4, 2, True)
    assert sorted(args for _, args in handed) == [("a",), ("b",), ("c",), ("d",)]
    assert all("wait" in what for what in left.running_what)


def test_pause_holds_work_until_resume():
    done = []
    pool = ThreadPool(2)
    pool.pause()
    pool.submit(done.append, 1)
    time.sleep(0.1)
    assert done == []
    pool.resume()
    assert pool.join(5) and done == [1]
    pool.shutdown(5)


def test_heartbeats_show_busy_workers_only():
    gate = threading.Event()
    pool = ThreadPool(3)
    assert all(b.busy_since is None for b in pool.beats())
    pool.submit(gate.wait)
    time.sleep(0.05)
    busy = [b for b in pool.beats() if b.busy_since is not None]
    assert len(busy) == 1 and "wait" in busy[0].current
    assert busy[0].hung(time.monotonic() + 10, hang_timeout=5)
    gate.set()
    pool.shutdown(5)


def test_waiters_of_tasks_that_never_ran_are_told_not_left_hanging():
    release = threading.Event()
    handed = []
    pool = ThreadPool(1, on_unfinished=handed.extend)
    pool.submit(release.wait)
    time.sleep(0.05)
    waited = pool.submit_result(divmod, 1, 1)
    outcome = {}
    mapper = threading.Thread(target=lambda: outcome.setdefault("map", _try(pool.map, str, [1, 2, 3])))
    mapper.start()
    time.sleep(0.05)
    left = pool.drain(Deadline.after(0.05))
    release.set()
    mapper.join(5)
    with pytest.raises(QueueClosed):
        waited.result(5)
    assert isinstance(outcome["map"], QueueClosed)
    assert handed == [] and left.queued == 4 and not left.handed_back


def _try(fn, *args):
    try:
        return fn(*args)
    except QueueClosed as exc:
        return exc


def test_busy_time_counts_runs_of_tasks_and_never_the_waits_between_them():
    """A worker times its busy runs (from a task taken without waiting to the moment it is about
    to wait), not each task: what it ran counts, an idle wait never does, and a paused pool's
    wait neither."""
    with ThreadPool(2, name="busy") as pool:
        done = threading.Event()
        left = [6]
        lock = threading.Lock()

        def task() -> None:
            time.sleep(0.05)
            with lock:
                left[0] -= 1
                if not left[0]:
                    done.set()

        for _ in range(6):
            pool.submit(task)
        assert done.wait(30)
        ran = pool.measures().busy_seconds
        assert ran >= 6 * 0.05 * 0.9  # at least what the tasks slept (the clock's grain aside)
        time.sleep(1.0)  # both workers idle, waiting on the queue: 2 s of waiting if it counted
        pool.pause()
        pool.submit(task)  # taken by a worker that then waits at the paused gate
        time.sleep(0.5)
        idle = pool.measures().busy_seconds
        assert idle - ran < 0.5, (ran, idle)  # neither the idle wait nor the paused one is busy time
        pool.resume()
        assert pool.measures().busy_seconds >= idle  # never goes back


def test_join_waits_for_every_task_queued_before_it_and_for_none_queued_after():
    """join() ends when the last task queued before the call finishes (queued, in a chunk, or
    running then), not when later work does; several joins at once each see their own."""
    started, release_first, release_later = threading.Event(), threading.Event(), threading.Event()
    done = []
    lock = threading.Lock()

    def first(x):
        started.set()
        release_first.wait(30)
        with lock:
            done.append(x)

    def later(x):
        release_later.wait(30)

    pool = ThreadPool(4)
    try:
        pool.submit(first, "running")
        assert started.wait(30)
        pool.submit_many(lambda x: done.append(x), range(100), chunksize=7)
        results = []
        joiners = [threading.Thread(target=lambda: results.append(pool.join(30))) for _ in range(3)]
        for j in joiners:
            j.start()
        assert not pool.join(0.2)  # "running" holds it: not finished yet
        pool.submit(later, "after")  # queued after the joins began: none of them waits for it
        release_first.set()
        for j in joiners:
            j.join(30)
        assert results == [True, True, True] and len(done) == 101
        assert pool.join(0.2) is False  # "after" still blocks: a new join waits for it
        release_later.set()
        assert pool.join(30)
    finally:
        release_first.set()
        release_later.set()
        pool.shutdown(30)


def test_join_on_an_idle_pool_returns_at_once_and_wakes_no_worker():
    pool = ThreadPool(8)
    try:
        taken = pool._queue.accepted
        for _ in range(100):
            assert pool.join(30)
        assert pool._queue.accepted == taken and pool._queue.depth == 0  # nothing was put for it
        assert all(b.busy_since is None for b in pool.beats())
    finally:
        pool.shutdown(30)


def test_join_returns_once_a_drain_took_back_what_never_ran():
    gate = threading.Event()
    handed = []
    pool = ThreadPool(1, on_unfinished=handed.extend)
    pool.submit(gate.wait, 30)
    pool.submit_many(print, range(50), chunksize=5)
    result = []
    joiner = threading.Thread(target=lambda: result.append(pool.join(60)))
    joiner.start()
    report = pool.drain(Deadline.after(0.2))  # the gate still holds the one worker
    gate.set()
    joiner.join(60)
    assert result == [True] and len(handed) == 50 and report is not None and report.queued == 50
