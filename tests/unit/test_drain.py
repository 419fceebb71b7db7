"""A drain (``lifecycle.py``: RUNNING ⇄ DRAINING): intake is held, not closed — producers block
in ``submit``/``put`` as on a full queue, timers skip their ticks — while the workers finish
everything accepted; ``resume`` opens intake again and nothing is lost. Real threads, real pools.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from servicehost.config import HostConfig
from servicehost.errors import ExitCode, IllegalTransition, QueueClosed
from servicehost.host import Host
from servicehost.lifecycle import HostState
from servicehost.service import Service
from servicehost.stopping import Deadline, StopToken
from servicehost.testing import FakeClock
from servicehost.workers import ClosableQueue, Dispatcher, PeriodicTimer, Pipeline, Stage, ThreadPool

HANG_GUARD = 30.0  # seconds: only to keep a broken test from hanging the run


class Producer(Service):
    """Submits tasks 0..total-1 from run(); the first ``gated`` of them wait at ``gate``, so the
    test can fill the queue and then watch the drain finish it."""

    def __init__(self, total: int, gated: int) -> None:
        super().__init__()
        self.total, self.gated = total, gated
        self.gate = threading.Event()
        self.done: list[int] = []
        self.lock = threading.Lock()
        self.submitted = 0
        self.queued_all_gated = threading.Event()
        self.run_ended: BaseException | None = None

    def start(self) -> None:
        self.pool = self.use(ThreadPool(4, queue_size=self.gated + 8))

    def task(self, i: int) -> None:
        if i < self.gated:
            assert self.gate.wait(HANG_GUARD)
        with self.lock:
            self.done.append(i)

    def run(self, stop: StopToken) -> None:
        try:
            for i in range(self.total):
                self.pool.submit(self.task, i)
                self.submitted = i + 1
                if self.submitted == self.gated:
                    self.queued_all_gated.set()
            stop.wait()
        except QueueClosed as exc:
            self.run_ended = exc
            raise


def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (checked every 10 ms); HANG_GUARD bounds it."""
    stop = Deadline.after(HANG_GUARD)
    while not condition():
        assert not stop.expired, "condition not met within the hang guard"
        threading.Event().wait(0.01)


def started(host: Host) -> threading.Thread:
    out: dict[str, ExitCode] = {}
    thread = threading.Thread(target=lambda: out.setdefault("code", host.run()), daemon=True)
    thread.start()
    assert host.lifecycle.wait_for({HostState.RUNNING, HostState.FAILED}, HANG_GUARD)
    thread.out = out  # type: ignore[attr-defined]
    return thread


def test_a_drain_with_256_queued_tasks_holds_intake_finishes_them_and_resume_loses_nothing():
    service = Producer(total=600, gated=256)
    host = Host([service])
    thread = started(host)
    assert service.queued_all_gated.wait(HANG_GUARD)
    host.drain()
    assert host.state is HostState.DRAINING
    before = host.counters()[0]
    # Four run, the rest queued: at least 256 accepted before the drain, none done yet.
    assert before.completed == 0 and before.submitted >= 256
    assert not host.wait_drained(0.05)  # the gated tasks cannot finish yet
    service.gate.set()
    assert host.wait_drained(HANG_GUARD)
    held_at = service.submitted
    after = host.counters()[0]
    # Everything accepted before the drain (and nothing after it) ran, exactly once.
    assert after.completed == after.submitted == len(service.done) and after.queue_depth == after.in_flight == 0
    assert held_at < service.total, "run() was never held in submit"
    assert sorted(service.done) == list(range(after.submitted))
    threading.Event().wait(0.05)  # the producer had time to go on, if the hold let it
    assert service.submitted == held_at and host.state is HostState.DRAINING

    host.resume()
    assert host.state is HostState.RUNNING
    assert host.lifecycle.wait_for({HostState.RUNNING}, 0)

    until(lambda: len(service.done) == service.total)
    assert Counter(service.done) == Counter(range(service.total)), "a task was lost or ran twice"
    host.request_stop()
    thread.join(HANG_GUARD)
    assert thread.out["code"] is ExitCode.OK  # type: ignore[attr-defined]


def test_a_stop_during_a_drain_closes_intake_and_the_blocked_run_ends_as_a_stop():
    service = Producer(total=10_000, gated=0)
    host = Host([service])
    thread = started(host)
    host.drain()
    assert host.wait_drained(HANG_GUARD)
    host.request_stop()
    thread.join(HANG_GUARD)
    assert thread.out["code"] is ExitCode.OK  # type: ignore[attr-defined]
    assert isinstance(service.run_ended, QueueClosed)
    counters = host.counters()[0]
    assert counters.completed == counters.submitted == len(service.done)


def test_only_a_running_host_drains_and_resume_undoes_a_drain_or_a_pause():
    class Idle(Service):
        def start(self) -> None:
            self.use(ThreadPool(2))

    host = Host([Idle()])
    thread = started(host)
    host.pause()
    with pytest.raises(IllegalTransition):
        host.drain()
    host.resume()
    host.drain()
    with pytest.raises(IllegalTransition):
        host.pause()
    with pytest.raises(IllegalTransition):
        host.drain()
    assert host.wait_drained(HANG_GUARD)  # nothing was queued: drained at once
    assert host.status_line().startswith("draining; pool: 0 done")
    host.resume()
    assert host.state is HostState.RUNNING
    host.request_stop()
    thread.join(HANG_GUARD)


def test_the_lifecycle_remembers_since_when_each_state_holds():
    class Idle(Service):
        pass

    host = Host([Idle()], HostConfig())
    thread = started(host)
    running_since = host.lifecycle.since
    host.drain()
    state, since = host.lifecycle.snapshot()
    assert state is HostState.DRAINING and since >= running_since
    host.request_stop()
    thread.join(HANG_GUARD)


def test_a_held_queue_blocks_producers_as_a_full_one_and_release_lets_them_on():
    queue: ClosableQueue[int] = ClosableQueue(4)
    queue.put(1)
    queue.hold()
    with pytest.raises(Exception, match="held"):
        queue.put(2, timeout=0)
    assert queue.get() == 1  # consumers go on
    went_on = threading.Event()

    def produce() -> None:
        queue.put(3)
        went_on.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    assert not went_on.wait(0.05)
    queue.release()
    assert went_on.wait(HANG_GUARD) and queue.get() == 3
    queue.hold()
    blocked = threading.Thread(target=lambda: pytest.raises(QueueClosed, queue.put, 4), daemon=True)
    blocked.start()
    queue.close()  # a stop wins over a hold
    blocked.join(HANG_GUARD)
    assert not blocked.is_alive()


def test_a_dispatcher_and_a_pipeline_hold_their_intake_and_finish_what_they_took():
    seen: list[str] = []
    lock = threading.Lock()

    def note(x: str) -> str:
        with lock:
            seen.append(x)
        return x

    dispatcher = Dispatcher(2, queue_size=8)
    pipeline = Pipeline([Stage("a", note), Stage("b", lambda x: note(x + "!"))], name="p")
    try:
        dispatcher.submit("k", note, "d1")
        pipeline.put("p1")
        dispatcher.hold_intake()
        pipeline.hold_intake()
        with pytest.raises(Exception, match="held"):
            dispatcher.submit("k", note, "d2", timeout=0.01)
        with pytest.raises(Exception, match="held"):
            pipeline.put("p2", timeout=0.01)
        assert dispatcher.join(HANG_GUARD)
        until(lambda: pipeline.counters().completed == 1)  # the accepted item goes through every stage
        assert sorted(seen) == ["d1", "p1", "p1!"]
        dispatcher.release_intake()
        pipeline.release_intake()
        dispatcher.submit("k", note, "d3", timeout=HANG_GUARD)
        pipeline.put("p3", timeout=HANG_GUARD)
    finally:
        dispatcher.shutdown(HANG_GUARD)
        pipeline.shutdown(HANG_GUARD)
    assert sorted(seen) == ["d1", "d3", "p1", "p1!", "p3", "p3!"]


def test_a_timer_skips_its_ticks_while_held_and_says_when_it_runs_next():
    clock = FakeClock()
    runs: list[float] = []
    timer = PeriodicTimer(1.0, lambda: runs.append(clock()), clock=clock, wait=clock.wait, name="tick")
    try:
        clock.wait_for_sleepers()
        clock.advance(1.0)
        until(lambda: timer.counters().completed == 1)
        first = timer.counters()
        assert first.last_result == "ok" and first.last_run is not None and first.next_run is not None
        timer.hold_intake()
        clock.wait_for_sleepers()
        clock.advance(1.0)
        clock.wait_for_sleepers()
        assert timer.counters().paused == 1 and len(runs) == 1
        timer.release_intake()
        clock.advance(1.0)
        until(lambda: len(runs) == 2)
        assert runs == [1.0, 3.0]
    finally:
        timer.shutdown(HANG_GUARD)
