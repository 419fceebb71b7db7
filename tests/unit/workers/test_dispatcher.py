import logging
import random
import threading
import time
from collections import defaultdict

import pytest

from servicehost.errors import QueueClosed, QueueFull
from servicehost.stopping import Deadline
from servicehost.components import Component
from servicehost.workers.dispatcher import Dispatcher

HANG_GUARD = 10.0  # seconds; only so that a bug fails the test instead of hanging it


def test_per_key_fifo_and_one_task_at_a_time_per_key_with_many_keys_and_producers():
    keys, per_key, producers = 64, 100, 4
    seen = defaultdict(list)
    running = defaultdict(int)
    most_at_once = defaultdict(int)
    lock = threading.Lock()

    def task(key, seq):
        with lock:
            running[key] += 1
            most_at_once[key] = max(most_at_once[key], running[key])
        if random.random() < 0.05:
            time.sleep(0.0005)  # let other workers overtake, to shake out ordering bugs
        with lock:
            seen[key].append(seq)
            running[key] -= 1

    dispatcher = Dispatcher(8, queue_size=64)

    def produce(first):
        # each key has a single producer, so its submission order is well defined
        for seq in range(per_key):
            for key in range(first, keys, producers):
                dispatcher.submit(key, task, key, seq)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    assert dispatcher.join(HANG_GUARD)
    assert {k: seen[k] for k in range(keys)} == {k: list(range(per_key)) for k in range(keys)}
    assert set(most_at_once.values()) == {1}
    assert dispatcher.active_keys == 0  # per-key state is gone once a key has drained
    c = dispatcher.counters()
    assert (c.submitted, c.completed, c.failed, c.in_flight, c.queue_depth) == (6400, 6400, 0, 0, 0)
    assert dispatcher.drain(Deadline.after(HANG_GUARD)) is None
    assert isinstance(dispatcher, Component)


def test_a_slow_key_does_not_block_other_keys():
    gate, slow_started = threading.Event(), threading.Event()
    done_fast = []
    all_fast_done = threading.Event()
    slow_after = []

    def slow():
        slow_started.set()
        gate.wait(HANG_GUARD)

    def fast(i):
        done_fast.append(i)
        if len(done_fast) == 50:
            all_fast_done.set()

    dispatcher = Dispatcher(2)
    dispatcher.submit("slow", slow)
    for i in range(3):
        dispatcher.submit("slow", slow_after.append, i)
    assert slow_started.wait(HANG_GUARD)
    for i in range(50):
        dispatcher.submit(f"key-{i % 10}", fast, i)
    assert all_fast_done.wait(HANG_GUARD)  # served by the other worker while "slow" is held
    assert slow_after == []  # the slow key's later tasks wait behind its first
    assert dispatcher.active_keys == 1
    gate.set()
    assert dispatcher.join(HANG_GUARD)
    assert slow_after == [0, 1, 2]
    assert dispatcher.shutdown(HANG_GUARD) is None


def test_submit_blocks_while_the_dispatcher_is_full():
    gate, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        gate.wait(HANG_GUARD)

    dispatcher = Dispatcher(1, queue_size=2)
    dispatcher.submit("a", hold)
    assert started.wait(HANG_GUARD)
    dispatcher.submit("a", lambda: None)
    dispatcher.submit("b", lambda: None)  # two queued over all keys: full
    with pytest.raises(QueueFull):
        dispatcher.submit("c", lambda: None, timeout=0.01)
    returned = threading.Event()

    def producer():
        dispatcher.submit("c", lambda: None)
        returned.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not returned.wait(0.2)  # still blocked: backpressure
    gate.set()
    assert returned.wait(HANG_GUARD)
    assert dispatcher.shutdown(HANG_GUARD) is None
    assert dispatcher.counters().completed == 4


def test_a_producer_blocked_on_a_full_dispatcher_wakes_on_close():
    gate = threading.Event()
    dispatcher = Dispatcher(1, queue_size=1)
    dispatcher.submit("a", gate.wait, HANG_GUARD)
    dispatcher.submit("a", lambda: None)
    raised = []
    producer = threading.Thread(target=lambda: raised.append(pytest.raises(QueueClosed, dispatcher.submit, "b", print)))
    producer.start()
    time.sleep(0.05)
    dispatcher.close()
    producer.join(HANG_GUARD)
    assert not producer.is_alive() and len(raised) == 1
    gate.set()
    assert dispatcher.drain(Deadline.after(HANG_GUARD)) is None


def test_a_task_error_is_logged_and_counted_and_neither_the_worker_nor_the_key_stops(caplog):
    seen = []

    def step(i):
        if i % 4 == 0:
            raise RuntimeError(f"bad {i}")
        seen.append(i)

    with caplog.at_level(logging.ERROR, logger="servicehost.workers"):
        with Dispatcher(2, name="d") as dispatcher:
            for i in range(20):
                dispatcher.submit("k", step, i)
            assert dispatcher.join(HANG_GUARD)
            assert all(t.is_alive() for t in dispatcher._threads)
    assert seen == [i for i in range(20) if i % 4]  # the key went on, in order
    c = dispatcher.counters()
    assert (c.completed, c.failed) == (15, 5)
    failures = [r for r in caplog.records if getattr(r, "event", "") == "task_failed"]
    assert len(failures) == 5 and all(r.exc_info is not None for r in failures)
    assert failures[0].event_id == 3001 and failures[0].getMessage().startswith("d: task ")


def test_close_stops_intake_and_drain_finishes_every_accepted_task():
    done = []
    dispatcher = Dispatcher(4)
    for i in range(400):
        dispatcher.submit(i % 13, lambda i=i: (time.sleep(0.0005), done.append(i)))
    dispatcher.close()
    with pytest.raises(QueueClosed):
        dispatcher.submit("late", print)
    assert dispatcher.drain(Deadline.after(HANG_GUARD)) is None
    assert sorted(done) == list(range(400))
    assert not any(t.is_alive() for t in dispatcher._threads)
    assert dispatcher.active_keys == 0


def test_drain_at_the_deadline_reports_and_hands_back_key_fn_args_in_key_order():
    gate, started = threading.Event(), threading.Event()
    handed = []

    def hold():
        started.set()
        gate.wait(HANG_GUARD)

    dispatcher = Dispatcher(1, on_unfinished=handed.extend)
    dispatcher.submit("a", hold)
    assert started.wait(HANG_GUARD)
    dispatcher.submit("a", print, "a1")
    dispatcher.submit("b", print, "b1")
    dispatcher.submit("a", print, "a2")
    dispatcher.submit("c", print, "c1")
    left = dispatcher.drain(Deadline.after(0.1))
    assert left is not None
    assert (left.kind, left.queued, left.running, left.handed_back) == ("tasks", 4, 1, True)
    assert left.running_what[0].endswith("hold")
    assert [(key, args) for key, _, args in handed] == [("a", ("a1",)), ("a", ("a2",)), ("b", ("b1",)), ("c", ("c1",))]
    assert dispatcher.active_keys == 1  # only the key still running
    gate.set()
    assert dispatcher.drain(Deadline.after(HANG_GUARD)) is None
    assert dispatcher.active_keys == 0
    assert dispatcher.counters().completed == 1


def test_pause_holds_tasks_until_resume():
    done = []
    dispatcher = Dispatcher(2)
    dispatcher.pause()
    dispatcher.submit("k", done.append, 1)
    dispatcher.submit("j", done.append, 2)
    time.sleep(0.1)
    assert done == []
    assert dispatcher.counters().queue_depth == 2
    dispatcher.resume()
    assert dispatcher.join(HANG_GUARD) and sorted(done) == [1, 2]
    dispatcher.pause()
    dispatcher.submit("k", done.append, 3)
    assert dispatcher.drain(Deadline.after(HANG_GUARD)) is None  # close resumes, so it drains
    assert done[-1] == 3


def test_heartbeats_show_busy_workers_only():
    gate, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        gate.wait(HANG_GUARD)

    dispatcher = Dispatcher(3)
    assert all(b.busy_since is None for b in dispatcher.beats())
    dispatcher.submit("k", hold)
    assert started.wait(HANG_GUARD)
    busy = [b for b in dispatcher.beats() if b.busy_since is not None]
    assert len(busy) == 1 and busy[0].current.endswith("hold")
    assert dispatcher.counters().in_flight == 1
    gate.set()
    assert dispatcher.shutdown(HANG_GUARD) is None


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"queue_size": 0}])
def test_bad_sizes_are_refused(kwargs):
    with pytest.raises(ValueError):
        Dispatcher(**kwargs)
