"""A task's error never ends its worker, whatever the error is: here, errors whose own
``__str__`` raises (user code too), on every worker model and the intake. Before, the failure
path called ``str(exc)`` to describe the error; that raised in turn and ended the worker thread,
so the tasks queued behind it never ran (a ThreadPool of 2 ran 2 of 5 such tasks, then had no
thread left)."""

from __future__ import annotations

import threading

import pytest

from servicehost import Intake
from servicehost.errors import describe_error, error_message
from servicehost.intake import open_store
from servicehost.platforms.status_screen import last_error_line
from servicehost.stopping import Deadline
from servicehost.workers.dispatcher import Dispatcher
from servicehost.workers.pipeline import Pipeline, Stage
from servicehost.workers.process_pool import ProcessPool
from servicehost.workers.thread_pool import ThreadPool
from servicehost.workers.timers import PeriodicTimer

HANG_GUARD = 30.0  # only so that a bug fails the test instead of hanging it
UNPRINTABLE = "<its message could not be made: RuntimeError>"


class Unprintable(Exception):
    """An error whose message cannot be made."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ raised")


class NotAString(Exception):
    """An error whose ``__str__`` returns what is not a string (str() raises TypeError)."""

    def __str__(self):  # type: ignore[no-untyped-def]
        return 42


class UnprintableAndUnpicklable(Unprintable):
    """For the process pool: it cannot travel back from the child as itself either."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())


@pytest.mark.parametrize("error, text", [
    (Unprintable(), f"Unprintable: {UNPRINTABLE}"),
    (NotAString(), "NotAString: <its message could not be made: TypeError>"),
    (ValueError("two\nlines"), "ValueError: two lines"),
    (KeyError(), "KeyError"),
    (OSError("name-\udcff \x1b]0;title\x07 \x1b[2J"), "OSError: name-\\udcff \\x1b]0;title\\x07 \\x1b[2J"),
])
def test_describe_error_never_raises_and_is_one_printable_line(error: BaseException, text: str) -> None:
    assert describe_error(error) == text
    assert error_message(Unprintable()) == UNPRINTABLE


def test_a_status_shows_a_services_last_error_escaped() -> None:
    """The status screen prints what a service sent: an error text with a terminal escape or a
    newline (an older service, or one that is not ours, may send it raw) is shown escaped."""
    line = last_error_line({"component": "pool\n", "error": "Boom \x1b[2J\nFORGED", "at": None}, 0.0)
    assert line == "last error: pool\\n: Boom \\x1b[2J\\nFORGED"


def _every_other(i: int) -> None:
    if i % 2:
        raise Unprintable()


def test_thread_pool_workers_outlive_unprintable_errors() -> None:
    with ThreadPool(2, name="hostile") as pool:
        for i in range(20):
            pool.submit(_every_other, i)
        pool.submit_many(_every_other, range(20, 60), chunksize=3)
        result = pool.submit_result(_every_other, 1)
        assert pool.join(HANG_GUARD)
        with pytest.raises(Unprintable):
            result.result(HANG_GUARD)
        assert all(t.is_alive() for t in pool._threads)
        c = pool.counters()
    assert (c.completed, c.failed) == (30, 31)
    assert c.last_error == f"Unprintable: {UNPRINTABLE}"


def test_dispatcher_workers_outlive_unprintable_errors() -> None:
    ran: list[int] = []

    def task(i: int) -> None:
        ran.append(i)
        _every_other(i)

    dispatcher = Dispatcher(2, name="hostile")
    for i in range(40):
        dispatcher.submit(i % 3, task, i)
    assert dispatcher.drain(Deadline.after(HANG_GUARD)) is None
    assert sorted(ran) == list(range(40))
    assert dispatcher.counters().failed == 20


def test_pipeline_stages_outlive_unprintable_errors() -> None:
    out: list[int] = []

    def stage(i: int) -> int:
        _every_other(i)
        return i

    pipe = Pipeline([Stage("hostile", stage, workers=2), Stage("out", out.append)])
    for i in range(40):
        pipe.put(i)
    assert pipe.drain(Deadline.after(HANG_GUARD)) is None
    assert sorted(out) == list(range(0, 40, 2))
    assert pipe.counters().failed == 20


def test_a_timer_outlives_unprintable_errors() -> None:
    runs: list[int] = []
    enough = threading.Event()

    def run() -> None:
        runs.append(len(runs))
        if len(runs) >= 4:
            enough.set()
        raise Unprintable()

    timer = PeriodicTimer(0.01, run, name="hostile")
    try:
        assert enough.wait(HANG_GUARD), f"the timer stopped after {len(runs)} runs"
    finally:
        assert timer.drain(Deadline.after(HANG_GUARD)) is None
    assert timer.counters().failed >= 4


def _raise_unprintable(i: int) -> int:
    if i % 2:
        raise UnprintableAndUnpicklable()
    return i


def test_process_pool_children_send_back_unprintable_unpicklable_errors() -> None:
    pool = ProcessPool(2, name="hostile")
    try:
        results = [pool.submit_result(_raise_unprintable, i) for i in range(6)]
        for i, result in enumerate(results):
            if i % 2:
                with pytest.raises(RuntimeError, match=UNPRINTABLE.replace("<", ".").replace(">", ".")):
                    result.result(HANG_GUARD)
            else:
                assert result.result(HANG_GUARD) == i
    finally:
        pool.shutdown(timeout=HANG_GUARD)


def test_an_intake_handler_with_unprintable_errors_fails_its_jobs_and_goes_on(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    done: list[int] = []
    with open_store(url) as store:
        ids = store.submit_many([{"n": i} for i in range(10)], max_attempts=1)

    def handler(job):  # type: ignore[no-untyped-def]
        if job.payload["n"] % 2:
            raise Unprintable()
        done.append(job.id)

    with Intake(handler, store=url, workers=2) as intake:
        end = Deadline.after(HANG_GUARD)
        while intake.counters().dead_letters < 5 or len(done) < 5:
            assert not end.expired, f"{len(done)} done, {intake.counters().dead_letters} dead"
            threading.Event().wait(0.05)
    assert sorted(done) == ids[0::2]
    with open_store(url) as store:
        dead = store.dead()
    assert sorted(d.id for d in dead) == ids[1::2]
    assert {e.error for d in dead for e in d.errors} == {f"Unprintable: {UNPRINTABLE}"}
