"""The stop-report rule, for every model: when a drain reports at its deadline, every accepted task
is done, running (counted), or never started (counted, and given back to exactly one owner: its
waiter, or ``on_unfinished``); a task given back never runs afterwards.

Each case submits real work, drains at a deadline while tasks are running and queued (including
inside chunks a worker has already taken), then lets everything finish and checks the partition.
The randomised cases vary chunk sizes, task lengths, the mix of intake calls and the moment of the
deadline, so the drain lands at every point of a worker's cycle.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from servicehost.errors import QueueClosed
from servicehost.stopping import Deadline
from servicehost.workers.dispatcher import Dispatcher
from servicehost.workers.pipeline import Pipeline, Stage
from servicehost.workers.process_pool import ProcessPool
from servicehost.workers.thread_pool import ThreadPool

GUARD = 30.0


class Ledger:
    """What the tasks themselves saw: which ran, and whether any started after the report."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[object] = []
        self.after_report: list[object] = []
        self.reported = threading.Event()
        self.release = threading.Event()
        self.handed: list[object] = []

    def task(self, x: object, seconds: float = 0.0) -> object:
        with self.lock:
            self.started.append(x)
            if self.reported.is_set():
                self.after_report.append(x)
        if seconds < 0:
            self.release.wait(GUARD)  # "long": runs until the test releases it
        elif seconds:
            time.sleep(seconds)
        return x


def wait_until(predicate, what: str) -> None:
    end = time.monotonic() + GUARD
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_thread_pool_submit_many_counts_and_hands_back_the_rest_of_taken_chunks():
    """The issue's case: 40 tasks in chunks of 10 on 4 workers, each chunk already taken by a
    worker when the deadline comes: 4 running, 36 never started and handed back, none lost."""
    ledger = Ledger()
    pool = ThreadPool(4, on_unfinished=ledger.handed.extend)
    pool.submit_many(lambda x: ledger.task(x, -1), range(40), chunksize=10)
    wait_until(lambda: len(ledger.started) == 4, "every worker busy in its chunk")
    left = pool.shutdown(0.2)
    ledger.reported.set()
    assert left is not None
    assert (left.queued, left.running, left.handed_back, left.to_waiters) == (36, 4, True, 0)
    handed = [args[0] for _, args in ledger.handed]
    assert len(handed) == 36
    ledger.release.set()
    assert pool.drain(Deadline.after(GUARD)) is None  # the 4 running ones finish; nothing else runs
    assert sorted(ledger.started + handed) == list(range(40))
    assert len(ledger.started) == 4 and ledger.after_report == []
    c = pool.counters()
    assert (c.completed, c.queue_depth, c.in_flight) == (4, 0, 0)


def test_a_waited_task_goes_back_to_its_waiter_only():
    """``map`` chunks a worker has begun: the rest fails the waiter, and is not handed back too."""
    ledger = Ledger()
    pool = ThreadPool(2, on_unfinished=ledger.handed.extend)
    outcome: list[object] = []
    mapper = threading.Thread(target=lambda: outcome.append(_try(pool.map, lambda x: ledger.task(x, -1), range(10), chunksize=5)))
    mapper.start()
    wait_until(lambda: len(ledger.started) == 2, "both workers busy")
    left = pool.shutdown(0.1)
    ledger.reported.set()
    assert left is not None and (left.queued, left.to_waiters, left.running, left.handed_back) == (8, 8, 2, False)
    ledger.release.set()
    mapper.join(GUARD)
    assert isinstance(outcome[0], QueueClosed) and ledger.handed == []
    assert pool.drain(Deadline.after(GUARD)) is None
    assert len(ledger.started) == 2 and ledger.after_report == []


def _try(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except QueueClosed as exc:
        return exc


# -- randomised: every model, the deadline at random moments ----------------------------------------
def _thread_pool_case(rng: random.Random, ledger: Ledger):
    pool = ThreadPool(rng.choice([1, 2, 4, 8]), queue_size=rng.choice([4, 64, 1024]),
                      on_unfinished=ledger.handed.extend)
    waiters: list[tuple[list[int], object]] = []
    maps: list[tuple[list[int], list[object], threading.Thread]] = []
    accepted: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            kind = rng.random()
            size = rng.randint(1, 60)
            items = list(range(n, n + size))
            seconds = rng.choice([0.0, 0.0005, 0.002])
            fn = lambda x, s=seconds: ledger.task(x, s)  # noqa: E731
            try:
                if kind < 0.5:
                    pool.submit_many(fn, items, chunksize=rng.randint(1, 16))
                    accepted.extend(items)
                elif kind < 0.8:
                    for x in items[:5]:
                        pool.submit(fn, x)
                        accepted.append(x)
                    items = items[:5]
                elif kind < 0.9:
                    r = pool.submit_result(fn, items[0])
                    accepted.append(items[0])
                    waiters.append(([items[0]], r))
                    items = items[:1]
                else:  # accepted: counted at the end, from the outcome (a QueueClosed says how many)
                    box: list[object] = []
                    t = threading.Thread(target=lambda it=items, b=box: b.append(_try(pool.map, fn, it, chunksize=7)))
                    maps.append((items, box, t))
                    t.start()
                    t.join(0.02)
            except QueueClosed as exc:  # submit_many may have been accepted in part
                accepted.extend(items[: getattr(exc, "accepted", 0) or 0])
                return
            n += size

    def handed_items() -> list[int]:
        """Fire-and-forget tasks handed back; and, once every map has returned, its accepted
        items joined to ``accepted`` and those that did not run to the waiters told."""
        ran = set(ledger.started)
        for items, box, t in maps:
            t.join(GUARD)
            outcome = box[0]
            taken = items[: getattr(outcome, "accepted", len(items))] if isinstance(outcome, QueueClosed) else items
            accepted.extend(taken)
            if isinstance(outcome, QueueClosed):
                waiters.append(([x for x in taken if x not in ran], [outcome]))
        return [args[0] for _, args in ledger.handed]

    return pool, produce, stop, accepted, waiters, handed_items


def _pipeline_case(rng: random.Random, ledger: Ledger):
    def first(x):
        ledger.task(("a", x), rng.choice([0.0, 0.001]))
        return x

    def second(x):
        ledger.task(("b", x), rng.choice([0.0, 0.002]))

    pipe = Pipeline([Stage("a", first, workers=rng.randint(1, 3), queue_size=rng.choice([2, 16])),
                     Stage("b", second, workers=rng.randint(1, 3), queue_size=rng.choice([2, 16]))],
                    on_unfinished=ledger.handed.extend)
    accepted: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            try:
                pipe.put(n)
            except QueueClosed:
                return
            accepted.append(n)
            n += 1

    return pipe, produce, stop, accepted, [], None


def _dispatcher_case(rng: random.Random, ledger: Ledger):
    d = Dispatcher(rng.choice([1, 3, 8]), queue_size=rng.choice([4, 256]), on_unfinished=ledger.handed.extend)
    accepted: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            try:
                d.submit(n % 7, ledger.task, n, rng.choice([0.0, 0.001]))
            except QueueClosed:
                return
            accepted.append(n)
            n += 1

    def handed_items() -> list[int]:
        return [args[0] for _, _, args in ledger.handed]

    return d, produce, stop, accepted, [], handed_items


@pytest.mark.parametrize("case", [_thread_pool_case, _pipeline_case, _dispatcher_case],
                         ids=["thread_pool", "pipeline", "dispatcher"])
@pytest.mark.parametrize("seed", range(12))
def test_at_any_deadline_every_accepted_task_is_done_running_or_given_back_once(case, seed):
    rng = random.Random(seed)
    ledger = Ledger()
    component, produce, stop, accepted, waiters, handed_items = case(rng, ledger)
    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(rng.uniform(0.005, 0.08))
    left = component.drain(Deadline.after(rng.choice([0.0, 0.001, 0.01, 0.03])))
    with ledger.lock:
        ran_at_report = len(ledger.started)
        ledger.reported.set()
    stop.set()
    producer.join(GUARD)
    assert not producer.is_alive()
    # Let what was running finish; a second drain finds nothing more to give back.
    again = component.drain(Deadline.after(GUARD))
    assert again is None or (again.queued == 0 and again.running == 0)

    if case is _pipeline_case:
        # An item runs once per stage; stage b's items came from stage a, so count per stage.
        handed = ledger.handed
        a_ran = [x for stage, x in ledger.started if stage == "a"]
        a_handed = [x for stage, x in handed if stage == "a"]
        assert sorted(a_ran + a_handed) == sorted(accepted), "every accepted item ran stage a or was handed back"
        b_ran = [x for stage, x in ledger.started if stage == "b"]
        b_handed = [x for stage, x in handed if stage == "b"]
        assert sorted(b_ran + b_handed) == sorted(a_ran), "every item out of stage a went on or was handed back"
    else:
        handed = handed_items()
        told = [x for items, w in waiters for x in items if _told(w)]
        ran = list(ledger.started)
        assert sorted(ran + handed + told) == sorted(accepted), "each accepted task: ran, handed back or told, once"
        queued = len(handed) + len(told)
        assert (left.queued if left else 0) == queued
    # Nothing given back ran afterwards, nothing started after the report except what it counted.
    started_late = len(ledger.started) - ran_at_report
    assert started_late <= (left.running if left else 0)
    if case is not _pipeline_case:  # a pipeline's running item may pass on to the next stage late
        assert ledger.after_report == []


def _told(waiter: object) -> bool:
    if isinstance(waiter, list):  # a map's outcome box
        return bool(waiter) and isinstance(waiter[0], QueueClosed)
    try:
        waiter.result(GUARD)  # type: ignore[attr-defined]
    except QueueClosed:
        return True
    return False


# -- ProcessPool: the same rule across a process boundary ------------------------------------------
def record_and_sleep(path: str, x: int, seconds: float) -> int:
    with open(path, "a") as f:
        f.write(f"{x}\n")
    time.sleep(seconds)
    return x


def test_process_pool_gives_back_what_no_child_started_and_nothing_runs_twice(tmp_path: Path):
    ran_file = str(tmp_path / "ran")
    handed: list[tuple[object, tuple]] = []
    pool = ProcessPool(2, on_unfinished=handed.extend)
    pool.wait_ready(GUARD)
    for x in range(12):
        pool.submit(record_and_sleep, ran_file, x, 0.5)
    waited = [pool.submit_result(record_and_sleep, ran_file, 100 + i, 0.5) for i in range(3)]
    wait_until(lambda: os.path.exists(ran_file) and len(Path(ran_file).read_text().split()) >= 2, "both children busy")
    left = pool.drain(Deadline.after(0.1))
    assert left is not None
    told = 0
    for r in waited:
        try:
            r.result(GUARD)
        except QueueClosed:
            told += 1
    ran = sorted(int(x) for x in Path(ran_file).read_text().split())
    handed_xs = sorted(args[1] for _, args in handed)
    assert left.to_waiters == told == 3
    assert left.queued == len(handed_xs) + told
    assert left.running == len(ran) == 2  # the two running at the deadline were terminated
    assert sorted(ran + handed_xs) == list(range(12))
    time.sleep(0.6)  # a hand-off that slipped through would have written by now
    assert sorted(int(x) for x in Path(ran_file).read_text().split()) == ran
