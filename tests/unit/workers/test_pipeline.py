import logging
import threading
import time

import pytest

from servicehost.errors import QueueClosed, QueueFull
from servicehost.stopping import Deadline
from servicehost.components import Component
from servicehost.workers.pipeline import Pipeline, Stage

HANG_GUARD = 10.0  # seconds; only so that a bug fails the test instead of hanging it


def test_items_pass_every_stage_in_order_through_single_worker_stages():
    out = []
    pipe = Pipeline([Stage("inc", lambda x: x + 1), Stage("double", lambda x: x * 2), Stage("out", out.append)])
    for i in range(1000):
        pipe.put(i)
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert out == [(i + 1) * 2 for i in range(1000)]
    c = pipe.counters()
    assert (c.submitted, c.completed, c.failed, c.in_flight, c.queue_depth) == (1000, 1000, 0, 0, 0)
    assert [s.name for s in pipe.stage_counters()] == ["pipeline/inc", "pipeline/double", "pipeline/out"]
    assert all(s.submitted == s.completed == 1000 for s in pipe.stage_counters())
    assert isinstance(pipe, Component)


def test_many_workers_per_stage_process_every_item_exactly_once():
    out = []
    lock = threading.Lock()

    def collect(x):
        with lock:
            out.append(x)

    with Pipeline([Stage("square", lambda x: x * x, workers=4, queue_size=8),
                   Stage("collect", collect, workers=3, queue_size=8)]) as pipe:
        for i in range(2000):
            pipe.put(i)
    assert sorted(out) == sorted(i * i for i in range(2000))
    assert pipe.counters().completed == 2000


def test_returning_none_drops_the_item_and_is_counted_per_stage():
    out = []
    with Pipeline([Stage("evens", lambda x: x if x % 2 == 0 else None), Stage("out", out.append)]) as pipe:
        for i in range(10):
            pipe.put(i)
    assert out == [0, 2, 4, 6, 8]
    first, last = pipe.stage_counters()
    assert (first.completed, first.dropped) == (10, 5)
    assert (last.submitted, last.completed, last.dropped) == (5, 5, 0)
    c = pipe.counters()
    assert (c.submitted, c.completed, c.failed, c.queue_depth) == (10, 5, 0, 0)


def test_a_stage_error_is_logged_counted_and_handed_to_on_error_and_the_worker_lives_on(caplog):
    out, errors = [], []

    def parse(x):
        if x % 10 == 3:
            raise ValueError(f"bad {x}")
        return x

    def broken_hook(item, exc):
        raise RuntimeError("the hook itself is broken")

    stages = [
        Stage("parse", parse, workers=2, on_error=lambda item, exc: errors.append((item, type(exc)))),
        Stage("check", lambda x: 1 / (x - 50), on_error=broken_hook),
        Stage("out", out.append),
    ]
    with caplog.at_level(logging.ERROR, logger="servicehost.workers"):
        pipe = Pipeline(stages, name="p")
        for i in range(100):
            pipe.put(i)
        # the workers that failed are still there and still working
        pipe.put(1000)
        assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert sorted(errors) == [(i, ValueError) for i in range(3, 100, 10)]
    assert sorted(out) == sorted(1 / (i - 50) for i in [*range(100), 1000] if i % 10 != 3 and i != 50)
    parse_c, check_c, out_c = pipe.stage_counters()
    assert (parse_c.failed, check_c.failed, out_c.failed) == (10, 1, 0)
    c = pipe.counters()
    assert (c.submitted, c.completed, c.failed) == (101, 90, 11)
    failures = [r for r in caplog.records if getattr(r, "event", "") == "task_failed"]
    # 11 stage failures, plus the broken hook's own error
    assert len(failures) == 12 and all(r.exc_info is not None for r in failures)
    assert {r.event_id for r in failures} == {3001}
    assert any(isinstance(r.exc_info[1], RuntimeError) for r in failures)


def test_put_blocks_while_the_first_stage_is_full():
    gate, started = threading.Event(), threading.Event()

    def slow(x):
        started.set()
        gate.wait(HANG_GUARD)

    pipe = Pipeline([Stage("slow", slow, queue_size=2)])
    pipe.put(0)
    assert started.wait(HANG_GUARD)  # the worker holds item 0
    pipe.put(1)
    pipe.put(2)  # the queue is now full
    with pytest.raises(QueueFull):
        pipe.put(3, timeout=0.01)
    returned = threading.Event()

    def producer():
        pipe.put(3)
        returned.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not returned.wait(0.2)  # still blocked: backpressure
    gate.set()
    assert returned.wait(HANG_GUARD)
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert pipe.stage_counters()[0].completed == 4


def test_a_full_downstream_stage_blocks_the_upstream_workers_without_making_them_look_hung():
    gate, started = threading.Event(), threading.Event()

    def slow(x):
        started.set()
        gate.wait(HANG_GUARD)

    pipe = Pipeline([Stage("fast", lambda x: x, queue_size=1), Stage("slow", slow, queue_size=1)])
    pipe.put(0)
    assert started.wait(HANG_GUARD)  # stage 2 holds item 0
    pipe.put(1)  # → stage 2's queue (now full)
    pipe.put(2)  # stage 1 finishes it and waits for room downstream
    pipe.put(3)  # → stage 1's queue (now full)
    with pytest.raises(QueueFull):
        pipe.put(4, timeout=0.2)
    c = pipe.counters()
    assert (c.submitted, c.in_flight, c.queue_depth) == (4, 2, 2)  # 0 running, 2 waiting downstream
    fast_beat = next(b for b in pipe.beats() if b.worker.startswith("pipeline/fast"))
    assert fast_beat.busy_since is None  # blocked by backpressure, not busy
    gate.set()
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert pipe.counters().completed == 4


def test_close_stops_intake_and_drain_finishes_every_stage_in_order():
    out = []
    ended = []

    def slow(x):
        time.sleep(0.001)
        return x

    pipe = Pipeline([Stage("a", slow, workers=3), Stage("b", slow, workers=2), Stage("c", out.append)])
    for i in range(300):
        pipe.put(i)
    pipe.close()
    with pytest.raises(QueueClosed):
        pipe.put(-1)
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert sorted(out) == list(range(300))
    for runner in pipe._stages:
        assert not any(t.is_alive() for t in runner.threads)
        ended.append(runner.queue.closed)
    assert ended == [True, True, True]  # closing upstream closed each next stage


def test_drain_at_the_deadline_reports_per_stage_and_hands_back_stage_item_pairs():
    gate_a, gate_b = threading.Event(), threading.Event()
    busy_a, busy_b = threading.Event(), threading.Event()
    handed = []
    late = threading.Event()

    def a(x):
        if x == "block-a":
            busy_a.set()
            gate_a.wait(HANG_GUARD)
        return x

    def b(x):
        if x == "block-b":
            busy_b.set()
            gate_b.wait(HANG_GUARD)

    def on_unfinished(items):
        handed.extend(items)
        if ("b", "block-a") in items:
            late.set()

    pipe = Pipeline([Stage("a", a), Stage("b", b)], on_unfinished=on_unfinished)
    pipe.put("block-b")
    assert busy_b.wait(HANG_GUARD)
    pipe.put("x1")
    pipe.put("x2")
    pipe.put("block-a")  # a single worker keeps order: x1 and x2 are in b's queue before this blocks
    assert busy_a.wait(HANG_GUARD)
    pipe.put("y1")
    pipe.put("y2")
    left = pipe.drain(Deadline.after(0.1))
    assert left is not None
    assert (left.kind, left.queued, left.running, left.handed_back) == ("items", 4, 2, True)
    assert left.queued_by_stage == {"a": 2, "b": 2}
    assert sorted(w.split(".")[-1] for w in left.running_what) == ["a", "b"]  # "a: module.<locals>.a"
    assert sorted(w.split(":")[0] for w in left.running_what) == ["a", "b"]
    assert handed == [("a", "y1"), ("a", "y2"), ("b", "x1"), ("b", "x2")]
    # "block-a" finishes stage a after the deadline: handed back late, bound for stage b
    gate_a.set()
    assert late.wait(HANG_GUARD)
    gate_b.set()
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert handed[-1] == ("b", "block-a")


def test_an_item_finishing_after_the_deadline_without_a_hook_is_logged(caplog):
    gate, busy = threading.Event(), threading.Event()

    def a(x):
        busy.set()
        gate.wait(HANG_GUARD)
        return x

    pipe = Pipeline([Stage("a", a), Stage("b", print)], name="p")
    pipe.put(1)
    assert busy.wait(HANG_GUARD)
    pipe.put(2)
    with caplog.at_level(logging.WARNING, logger="servicehost.workers"):
        left = pipe.drain(Deadline.after(0.05))
        assert left is not None and (left.queued, left.running, left.handed_back) == (1, 1, False)
        gate.set()
        assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    abandoned = [r for r in caplog.records if getattr(r, "event", "") == "item_abandoned"]
    assert len(abandoned) == 1 and abandoned[0].getMessage().startswith("p: an item bound for stage b")


def test_pause_holds_items_until_resume():
    out = []
    pipe = Pipeline([Stage("a", lambda x: x), Stage("b", out.append)])
    pipe.pause()
    for i in range(5):
        pipe.put(i)
    time.sleep(0.1)
    assert out == []
    pipe.resume()
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert out == [0, 1, 2, 3, 4]


def test_close_resumes_a_paused_pipeline_so_that_it_drains():
    out = []
    pipe = Pipeline([Stage("a", out.append)])
    pipe.pause()
    pipe.put(1)
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert out == [1]


def test_heartbeats_show_the_busy_worker_of_each_stage():
    gate, busy = threading.Event(), threading.Event()

    def hold(x):
        busy.set()
        gate.wait(HANG_GUARD)

    pipe = Pipeline([Stage("a", lambda x: x, workers=2), Stage("b", hold)])
    assert len(list(pipe.beats())) == 3 and all(b.busy_since is None for b in pipe.beats())
    pipe.put(1)
    assert busy.wait(HANG_GUARD)
    busy_beats = [b for b in pipe.beats() if b.busy_since is not None]
    assert len(busy_beats) == 1 and busy_beats[0].worker == "pipeline/b-0" and "hold" in busy_beats[0].current
    assert busy_beats[0].hung(time.monotonic() + 10, hang_timeout=5)
    gate.set()
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pipeline([]),
        lambda: Pipeline([Stage("a", print), Stage("a", print)]),
        lambda: Stage("a", print, workers=0),
        lambda: Stage("a", print, queue_size=0),
    ],
)
def test_bad_shapes_are_refused(make):
    with pytest.raises(ValueError):
        make()
