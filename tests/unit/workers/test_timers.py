import logging
import threading
import time

import pytest

from servicehost.stopping import Deadline
from servicehost.testing import FakeClock
from servicehost.components import Component
from servicehost.workers.thread_pool import ThreadPool
from servicehost.workers.timers import PeriodicTimer

HANG_GUARD = 10.0  # real seconds; only so that a bug fails the test instead of hanging it


def fake_timer(interval, fn, clock, **kwargs):
    return PeriodicTimer(interval, fn, clock=clock, wait=clock.wait, **kwargs)


def step_until(clock, until, step=0.25):
    """Advance the fake clock to ``until`` in steps, each once the timer sleeps again."""
    while clock() < until:
        clock.wait_for_sleepers(1, HANG_GUARD)
        clock.advance(step)
    clock.wait_for_sleepers(1, HANG_GUARD)  # the last run (if any) has finished


def test_a_fake_clock_wakes_sleepers_when_their_time_comes_or_on_wake():
    clock = FakeClock(10.0)
    results = []
    sleeper = threading.Thread(target=lambda: results.append(clock.wait(2.0)))
    sleeper.start()
    clock.wait_for_sleepers(1, HANG_GUARD)
    clock.advance(1.0)
    assert clock.sleepers == 1
    clock.advance(1.0)
    sleeper.join(HANG_GUARD)
    assert results == [False] and clock() == 12.0  # the time was reached
    sleeper = threading.Thread(target=lambda: results.append(clock.wait(5.0)))
    sleeper.start()
    clock.wait_for_sleepers(1, HANG_GUARD)
    clock.wake()
    sleeper.join(HANG_GUARD)
    assert results == [False, True]  # woken early
    assert clock.wait(0) is False
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_ticks_stay_on_the_grid_however_long_each_run_takes():
    clock = FakeClock()
    starts = []

    def run():
        starts.append(clock())
        clock.advance(0.25)  # each run takes a quarter of the interval

    timer = fake_timer(1.0, run, clock)
    step_until(clock, 400.0)
    # a "sleep interval after the run" timer would start at 1, 2.25, 3.5, ...
    assert starts == [float(n) for n in range(1, 401)]
    assert timer.drain(Deadline.after(HANG_GUARD)) is None
    c = timer.counters()
    assert (c.submitted, c.completed, c.failed, c.skipped, c.paused) == (400, 400, 0, 0, 0)
    assert isinstance(timer, Component)


def test_first_delay_moves_the_origin_of_the_grid():
    clock = FakeClock(100.0)
    starts = []
    timer = fake_timer(2.0, lambda: starts.append(clock()), clock, first_delay=0.5)
    step_until(clock, 107.0, step=0.5)
    assert starts == [100.5, 102.5, 104.5, 106.5]
    assert timer.drain(Deadline.after(HANG_GUARD)) is None


def test_a_run_that_overruns_skips_the_ticks_due_meanwhile(caplog):
    clock = FakeClock()
    starts = []

    def run():
        starts.append(clock())
        if clock() == 3.0:
            clock.advance(2.5)  # busy from 3 to 5.5: the ticks at 4 and 5 came due meanwhile
        elif clock() == 7.0:
            clock.advance(1.0)  # ends exactly when the tick at 8 is due: that one still runs

    with caplog.at_level(logging.WARNING, logger="servicehost.workers"):
        timer = fake_timer(1.0, run, clock, name="t")
        step_until(clock, 10.0)
        assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert starts == [1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    c = timer.counters()
    assert (c.completed, c.skipped) == (8, 2)
    skipped = [r for r in caplog.records if getattr(r, "event", "") == "tick_skipped"]
    assert len(skipped) == 1 and skipped[0].event_id == 3002
    assert skipped[0].getMessage() == "t: tick skipped, the previous run was still busy (2 skipped so far)"


def test_a_late_wake_runs_once_and_counts_the_missed_ticks(caplog):
    clock = FakeClock()
    starts = []
    with caplog.at_level(logging.WARNING, logger="servicehost.workers"):
        timer = fake_timer(1.0, lambda: starts.append(clock()), clock)
        clock.wait_for_sleepers(1, HANG_GUARD)
        clock.advance(3.5)  # a suspended machine: the ticks at 1, 2 and 3 all came due
        step_until(clock, 5.0)
        assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert starts == [3.5, 4.0, 5.0]
    assert timer.counters().skipped == 2
    assert [r.event_id for r in caplog.records if getattr(r, "event", "") == "ticks_missed"] == [3007]


def test_pause_skips_ticks_without_running_them_and_resume_keeps_the_grid():
    clock = FakeClock()
    starts = []
    timer = fake_timer(1.0, lambda: starts.append(clock()), clock)
    step_until(clock, 2.0)
    timer.pause()
    step_until(clock, 4.5)
    timer.resume()
    step_until(clock, 6.0)
    assert starts == [1.0, 2.0, 5.0, 6.0]
    c = timer.counters()
    assert (c.completed, c.skipped, c.paused) == (4, 0, 2)
    assert timer.drain(Deadline.after(HANG_GUARD)) is None


def test_a_failing_run_is_logged_and_counted_and_the_timer_goes_on(caplog):
    clock = FakeClock()
    starts = []

    def run():
        starts.append(clock())
        if len(starts) % 2:
            raise RuntimeError("odd run")

    with caplog.at_level(logging.ERROR, logger="servicehost.workers"):
        timer = fake_timer(1.0, run, clock, name="t")
        step_until(clock, 6.0)
        assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert len(starts) == 6
    c = timer.counters()
    assert (c.submitted, c.completed, c.failed) == (6, 3, 3)
    failures = [r for r in caplog.records if getattr(r, "event", "") == "task_failed"]
    assert len(failures) == 3 and all(r.exc_info is not None for r in failures)


def test_runs_never_overlap_on_the_timers_own_thread_with_a_real_clock():
    running, most, runs = [0], [0], [0]
    lock = threading.Lock()
    enough = threading.Event()

    def run():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.012)  # longer than the interval: ticks come due while busy
        with lock:
            running[0] -= 1
            runs[0] += 1
            if runs[0] == 5:
                enough.set()

    timer = PeriodicTimer(0.005, run, first_delay=0)
    assert enough.wait(HANG_GUARD)
    assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert most[0] == 1
    c = timer.counters()
    # five runs of 12 ms cannot start less than 48 ms apart: at least 9 ticks passed, 4 unrun
    assert c.completed >= 5 and c.skipped >= 4


def test_runs_never_overlap_on_a_pool_and_ticks_due_before_the_last_run_ends_are_skipped():
    clock = FakeClock()
    gate, finished, first_started = threading.Event(), threading.Event(), threading.Event()
    running, most, starts = [0], [0], []
    lock = threading.Lock()

    def run():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            starts.append(clock())
        if len(starts) == 1:
            first_started.set()
            gate.wait(HANG_GUARD)
        with lock:
            running[0] -= 1
        finished.set()

    pool = ThreadPool(4)
    timer = fake_timer(1.0, run, clock, run_on=pool)
    clock.wait_for_sleepers(1, HANG_GUARD)
    clock.advance(1.0)
    assert first_started.wait(HANG_GUARD)
    step_until(clock, 3.0, step=1.0)  # the run of tick 1 still holds the gate at ticks 2 and 3
    assert timer.counters().skipped == 2
    finished.clear()
    gate.set()
    assert finished.wait(HANG_GUARD)
    for _ in range(3):  # ticks 4, 5, 6: each run ends before the next tick
        finished.clear()
        clock.wait_for_sleepers(1, HANG_GUARD)
        clock.advance(1.0)
        assert finished.wait(HANG_GUARD)
    assert pool.join(HANG_GUARD)
    assert starts == [1.0, 4.0, 5.0, 6.0]
    assert most[0] == 1
    c = timer.counters()
    assert (c.submitted, c.completed, c.skipped, c.in_flight) == (4, 4, 2, 0)
    assert list(timer.beats()) == []  # the pool's beats show the run
    assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert pool.shutdown(HANG_GUARD) is None


def test_runs_never_overlap_on_a_pool_with_a_real_clock():
    running, most, runs = [0], [0], [0]
    lock = threading.Lock()
    enough = threading.Event()

    def run():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.012)
        with lock:
            running[0] -= 1
            runs[0] += 1
            if runs[0] == 5:
                enough.set()

    with ThreadPool(4) as pool:
        timer = PeriodicTimer(0.005, run, first_delay=0, run_on=pool)
        assert enough.wait(HANG_GUARD)
        assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert most[0] == 1
    assert timer.counters().skipped >= 4


def test_a_tick_the_full_pool_cannot_take_is_skipped_and_the_timer_never_blocks(caplog):
    clock = FakeClock()
    gate, busy = threading.Event(), threading.Event()
    pool = ThreadPool(1, queue_size=1)
    pool.submit(lambda: (busy.set(), gate.wait(HANG_GUARD)))
    assert busy.wait(HANG_GUARD)
    pool.submit(lambda: None)  # the pool's queue is full
    with caplog.at_level(logging.WARNING, logger="servicehost.workers"):
        timer = fake_timer(1.0, lambda: None, clock, run_on=pool, name="t")
        step_until(clock, 2.0, step=1.0)
    c = timer.counters()
    assert (c.submitted, c.skipped) == (0, 2)
    missed = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "ticks_missed"]
    assert missed == ["t: 1 tick(s) not run: pool's queue is full (1 skipped so far)",
                      "t: 1 tick(s) not run: pool's queue is full (2 skipped so far)"]
    gate.set()
    assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert pool.shutdown(HANG_GUARD) is None


def test_a_closed_pool_ends_the_timer():
    clock = FakeClock()
    pool = ThreadPool(1)
    timer = fake_timer(1.0, lambda: None, clock, run_on=pool)
    clock.wait_for_sleepers(1, HANG_GUARD)
    pool.close()
    clock.advance(1.0)
    timer._thread.join(HANG_GUARD)
    assert not timer._thread.is_alive()
    assert timer.counters().submitted == 0
    assert timer.drain(Deadline.after(HANG_GUARD)) is None


def test_drain_wakes_a_sleeping_timer_at_once():
    timer = PeriodicTimer(3600.0, lambda: None)
    started = time.monotonic()
    assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert not timer._thread.is_alive()
    assert time.monotonic() - started < HANG_GUARD
    clock = FakeClock()
    timer = fake_timer(3600.0, lambda: None, clock)
    clock.wait_for_sleepers(1, HANG_GUARD)
    assert timer.drain(Deadline.after(HANG_GUARD)) is None  # close() woke the fake wait too
    assert not timer._thread.is_alive()


def test_drain_at_the_deadline_reports_a_run_still_busy_and_its_heartbeat():
    gate, busy = threading.Event(), threading.Event()

    def run():
        busy.set()
        gate.wait(HANG_GUARD)

    timer = PeriodicTimer(3600.0, run, first_delay=0, name="t")
    assert busy.wait(HANG_GUARD)
    (beat,) = timer.beats()
    assert beat.busy_since is not None and beat.current.endswith("run")
    assert timer.counters().in_flight == 1
    left = timer.drain(Deadline.after(0.05))
    assert left is not None
    assert (left.component, left.kind, left.queued, left.running, left.handed_back) == ("t", "timer run", 0, 1, False)
    gate.set()
    assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert timer.counters().completed == 1


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1}, {"interval": 1, "first_delay": -1}])
def test_bad_timings_are_refused(kwargs):
    interval = kwargs.pop("interval")
    with pytest.raises(ValueError):
        PeriodicTimer(interval, print, **kwargs)
