"""The Store contract (intake/store.py), run against every store.

Every store passes this one suite: add a store by adding its opener to ``STORES`` (SQLite in a
temp folder; PostgreSQL in a fresh schema of the session's private cluster, ``pg_cluster`` from
tests/intake/pg.py). ``opener()`` opens a store; called twice, it gives a second handle on the
same database, as another process or machine would.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servicehost.intake.store import (
    MAX_KEY_BYTES, UNREADABLE_PAYLOAD, DeadJob, Job, LeaseLost, PayloadError, Stats, Store, StoreClosed, StoreError, Submission,
    UnknownJob, backoff,
    open_store, parse_url, periodic_key, redact,
)

HANG = 30.0  # a hang guard, never a measure


def _sqlite(tmp: Path) -> Callable[[], Store]:
    url = f"sqlite:///{tmp}/jobs.sqlite3?poll=0.01"
    return lambda: open_store(url)


def _postgresql(tmp: Path, request: pytest.FixtureRequest) -> Callable[[], Store]:
    cluster = request.getfixturevalue("pg_cluster")  # the session's private cluster (tests/intake/pg.py)
    url = cluster.url(schema=cluster.fresh_schema(), poll=0.01, reap_interval=0.05)  # a fresh schema per test
    return lambda: open_store(url)


STORES: dict[str, Callable[[Path, pytest.FixtureRequest], Callable[[], Store]]] = {
    "sqlite": lambda tmp, request: _sqlite(tmp), "postgresql": _postgresql,
}


@pytest.fixture(params=sorted(STORES))
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []
    make = STORES[request.param](tmp_path, request)

    def open_one() -> Store:
        store = make()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Callable[[], Store]) -> Store:
    return opener()


def claim_one(store: Store, node: str = "n1", lease: float = 30.0, wait: float = 0.0) -> Job:
    jobs = store.claim(node, 1, lease, wait=wait)
    assert len(jobs) == 1, jobs
    return jobs[0]


# -- submit ----------------------------------------------------------------------------------------
PAYLOADS: list[Any] = [
    {"n": 1, "nested": {"list": [1, 2.5, None, True, False, "ä€𝄞"]}},
    [1, "two", {"3": [4]}],
    "a string", "", 0, -7, 2**62, 10**30, 0.1, 1e-300, -0.0, True, False, None,
    b"", b"\x00\xff raw bytes", {"": ""},
]


def test_payloads_come_back_as_submitted(store: Store) -> None:
    ids = [store.submit(p) for p in PAYLOADS]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    got = {job.id: job.payload for job in store.claim("n1", 100)}
    for job_id, payload in zip(ids, PAYLOADS, strict=True):
        assert got[job_id] == payload and type(got[job_id]) is type(payload), payload
    negative_zero = next(i for i, p in enumerate(PAYLOADS) if type(p) is float and p == 0)
    assert math.copysign(1, got[ids[negative_zero]]) == -1


HOSTILE_TEXT = ['"', '\\', '"]', "', NULL); --", "\u2028\u2029", "\x00nul", "\ud7ff\ue000", "[1,2]", "null", "\t\n",
                # lone surrogates (what os.fsdecode makes of an undecodable byte): not UTF-8, so
                # SQLite and PostgreSQL refuse them as text; a payload still gets them back
                "\ud800", "name-\udcff.txt", "\udfff\ud800", "é\udc80€"]


def test_submit_many_gives_each_payload_back_exactly_in_order(store: Store) -> None:
    """A batch of JSON payloads (the stores may send it as one document) and a batch with bytes
    among them (row by row) come back value for value, type for type, in order, with the call's
    options; concurrent callers, alone and in batches, each get their own payloads' ids."""
    json_only = [p for p in PAYLOADS if not isinstance(p, bytes)] + HOSTILE_TEXT + [{"k": t} for t in HOSTILE_TEXT]
    later = time.time() - 1.0  # in the past: claimable, and the run_at each job must carry
    first = store.submit_many(json_only, key=None, priority=3, run_at=later, max_attempts=4)
    mixed = store.submit_many(PAYLOADS)
    assert first == sorted(first) and mixed == sorted(mixed) and first[-1] < mixed[0]
    results: dict[int, list[int]] = {}

    def produce(i: int) -> None:
        if i % 2:
            results[i] = [store.submit({"thread": i, "n": n}) for n in range(20)]
        else:
            results[i] = store.submit_many([{"thread": i, "n": n} for n in range(20)])

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = {job.id: job for job in store.claim("n1", 1000)}
    assert len(got) == len(json_only) + len(PAYLOADS) + 6 * 20
    for job_id, payload in zip(first, json_only, strict=True):
        job = got[job_id]
        assert job.payload == payload and type(job.payload) is type(payload), payload
        assert (job.priority, job.max_attempts) == (3, 4)
    for job_id, payload in zip(mixed, PAYLOADS, strict=True):
        assert got[job_id].payload == payload and type(got[job_id].payload) is type(payload), payload
    for i, ids in results.items():
        assert [got[j].payload for j in ids] == [{"thread": i, "n": n} for n in range(20)]


def test_submit_many_of_objects_and_arrays_only_gives_each_back_exactly(store: Store) -> None:
    """A batch whose payloads are all objects or arrays (a store may encode such a batch as one
    document, not payload by payload): every value, hostile text, number and nesting comes back as
    submitted, type for type, in order."""
    numbers = [0, -7, 2**62, 10**30, -(10**30), 0.1, 0.30000000000000004, 1e-300, 1e308, -0.0, 5e-324]
    batch: list[Any] = [
        *({"k": t, t: [t]} for t in HOSTILE_TEXT),
        *([t, {"t": t}] for t in HOSTILE_TEXT),
        {"numbers": numbers}, numbers, [], {}, [[[[[]]]]], {"": {"": {"": None}}},
        [True, False, None, "ä€𝄞", {"deep": [{"deeper": [1.5]}]}],
    ]
    ids = store.submit_many(batch)
    assert ids == sorted(ids) and len(set(ids)) == len(batch)
    got = {job.id: job.payload for job in store.claim("n1", 1000)}
    for job_id, payload in zip(ids, batch, strict=True):
        assert got[job_id] == payload and type(got[job_id]) is type(payload), payload
    back = got[ids[len(HOSTILE_TEXT) * 2]]["numbers"]
    assert [type(x) for x in back] == [type(x) for x in numbers]
    assert math.copysign(1, back[next(i for i, x in enumerate(numbers) if type(x) is float and x == 0)]) == -1


@pytest.mark.parametrize("bad", [{1, 2}, float("nan"), object(), {"k": float("inf")}])
def test_a_payload_that_is_not_json_is_refused_and_nothing_added(store: Store, bad: Any) -> None:
    with pytest.raises(PayloadError):
        store.submit(bad)
    with pytest.raises(PayloadError):
        store.submit_many([1, bad])
    with pytest.raises(PayloadError):  # among objects only (a batch a store may encode at once)
        store.submit_many([{"n": 1}, [bad], {"k": bad}])
    assert store.stats().ready == 0


BAD_OPTIONS: list[dict[str, Any]] = [
    {"priority": 2**31}, {"priority": -(2**31) - 1}, {"priority": 2**70}, {"priority": True}, {"priority": "5"},
    {"priority": 1.5}, {"run_at": math.nan}, {"run_at": math.inf}, {"run_at": -math.inf}, {"run_at": 10**400},
    {"run_at": "soon"}, {"run_at": True}, {"max_attempts": 0}, {"max_attempts": -1}, {"max_attempts": 2**31},
    {"max_attempts": 2**70}, {"max_attempts": 2.0}, {"key": 5}, {"key": "a\0b"}, {"key": b"k"},
    {"idempotency_key": 7}, {"idempotency_key": "x\0"}, {"key": "k\udcff"}, {"idempotency_key": "\ud800"},
    {"key": "k" * 1025}, {"idempotency_key": "é" * 513},
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=[repr(b)[:40] for b in BAD_OPTIONS])
def test_a_bad_submit_option_is_refused_on_the_callers_thread_and_the_store_goes_on(store: Store, bad: dict[str, Any]) -> None:
    """The same rules in every store, checked before the operation joins a group commit: a value the
    database refused there would fail everyone's operations in it (or, with a number too big for
    SQLite, end its store thread), and run_at=inf would be a job that never runs."""
    with pytest.raises(StoreError) as refused:
        store.submit({"n": 1}, **bad)
    name = next(iter(bad))
    assert name in str(refused.value)
    if name != "idempotency_key":  # submit_many takes it only inside a Submission
        with pytest.raises(StoreError):
            store.submit_many([{"n": 2}, {"n": 3}], **bad)
    with pytest.raises(StoreError):
        store.submit_many(["a", Submission("b", **bad)])
    assert store.stats() == Stats(0, 0, 0, 0, None)  # nothing written
    job_id = store.submit({"n": 4}, priority=2**31 - 1, run_at=time.time() - 1, max_attempts=2**31 - 1, key="k")
    assert claim_one(store).id == job_id  # the store goes on, and takes the limits themselves


BAD_CALLS: dict[str, Callable[[Store], Any]] = {
    "claim n": lambda s: s.claim("n1", 2**70), "claim n bool": lambda s: s.claim("n1", True),
    "claim lease nan": lambda s: s.claim("n1", 1, math.nan), "claim lease inf": lambda s: s.claim("n1", 1, math.inf),
    "claim lease negative": lambda s: s.claim("n1", 1, -1.0), "claim wait nan": lambda s: s.claim("n1", 1, wait=math.nan),
    "claim start big": lambda s: s.claim("n1", 1, start=2**70),
    "claim start text": lambda s: s.claim("n1", 1, start="1"),  # type: ignore[arg-type]
    "claim node NUL": lambda s: s.claim("n\0", 1), "claim node surrogate": lambda s: s.claim("n\udcff", 1),
    "renew node surrogate": lambda s: s.renew("\ud800"), "claim node long": lambda s: s.claim("n" * 1025, 1), "claim node bytes": lambda s: s.claim(b"n1", 1),  # type: ignore[arg-type]
    "renew lease nan": lambda s: s.renew("n1", math.nan), "renew exclude big": lambda s: s.renew("n1", exclude=[2**70]),
    "renew exclude text": lambda s: s.renew("n1", exclude=["1"]),  # type: ignore[list-item]
    "requeue big id": lambda s: s.requeue(2**70), "requeue id 0": lambda s: s.requeue(0),
    "requeue text id": lambda s: s.requeue("1"),  # type: ignore[arg-type]
    "jobs limit big": lambda s: s.jobs(limit=2**70), "jobs limit negative": lambda s: s.jobs(limit=-1),
    "dead limit big": lambda s: s.dead(limit=2**70),
    # a Job made or altered by hand: refused before it reaches the store's thread
    "ack token big": lambda s: s.ack(claim_one(s)._replace(token=2**70)),
    "ack_many id big": lambda s: s.ack_many([claim_one(s)._replace(id=2**70)]),
    "ack_many id text": lambda s: s.ack_many([claim_one(s)._replace(id="1")]),
    "ack_many not a job": lambda s: s.ack_many([object()]),  # type: ignore[list-item]
    "start token small": lambda s: s.start([claim_one(s)._replace(token=-2**70)]),
    "start id bool": lambda s: s.start([claim_one(s)._replace(id=True)]),
    "release id 0": lambda s: s.release([claim_one(s)._replace(id=0)]),
    "release token big": lambda s: s.release([claim_one(s)._replace(token=2**64)]),
    "fail token float": lambda s: s.fail(claim_one(s)._replace(token=1.5), "boom"),
    "complete token big": lambda s: s.complete(claim_one(s)._replace(token=2**70), lambda conn: None),
    "fail retry_in nan": lambda s: s.fail(claim_one(s), "boom", retry_in=math.nan),
    "fail retry_in negative": lambda s: s.fail(claim_one(s), "boom", retry_in=-5),
}


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_a_bad_argument_is_refused_on_the_callers_thread_and_the_store_goes_on(store: Store, call: str) -> None:
    first = store.submit({"n": 1})
    with pytest.raises(StoreError):
        BAD_CALLS[call](store)
    second = store.submit({"n": 2})  # the store still works: its thread did not die
    jobs = store.claim("n2", 10)
    assert {j.id for j in jobs} <= {first, second} and second in {j.id for j in jobs}
    assert all(store.ack(j).result(HANG) for j in jobs)


def test_submit_many_is_in_order_and_takes_submissions(store: Store) -> None:
    ids = store.submit_many(["a", Submission("b", priority=5, key="k"), "c"], priority=1)
    assert len(ids) == 3 and ids == sorted(ids)
    jobs = store.claim("n1", 10)
    assert [(j.payload, j.priority, j.key) for j in jobs] == [("b", 5, "k"), ("a", 1, None), ("c", 1, None)]
    assert store.submit_many([]) == []


def test_idempotency_key_returns_the_first_job_even_after_it_is_done(store: Store) -> None:
    first = store.submit({"order": 991}, idempotency_key="order-991")
    assert store.submit({"order": "again"}, idempotency_key="order-991") == first
    ids = store.submit_many([Submission(1, idempotency_key="x"), Submission(2, idempotency_key="x")])
    assert ids[0] == ids[1] != first
    job = store.claim("n1", 10)[0]
    assert job.id == first and job.payload == {"order": 991} and job.idempotency_key == "order-991"
    assert store.ack(job).result(HANG) is True
    assert store.submit("late duplicate", idempotency_key="order-991") == first
    assert store.stats().running == 1  # only "x" is left


def test_periodic_jobs_are_one_per_tick_however_many_schedulers(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    ids = {s.submit({"tick": 7}, idempotency_key=periodic_key("report", 7)) for s in (a, b, a)}
    assert len(ids) == 1
    assert a.submit({"tick": 8}, idempotency_key=periodic_key("report", 8)) not in ids
    assert a.stats().ready == 2


# -- claim, order ----------------------------------------------------------------------------------
def test_claim_counts_the_attempt_and_fences_each_claim(store: Store) -> None:
    job_id = store.submit("x", max_attempts=3)
    before = time.time()
    job = claim_one(store, "node-a", lease=30.0)
    assert (job.id, job.attempt, job.node, job.max_attempts) == (job_id, 1, "node-a", 3)
    assert job.lease_until >= before + 30.0 - 1
    assert store.claim("node-b", 10) == []  # running: nobody else gets it
    assert store.stats() == Stats(0, 1, 0, 0, None)


def test_claim_takes_at_most_n_and_two_nodes_never_share_a_job(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    a.submit_many(range(50))
    got_a = a.claim("a", 20)
    got_b = b.claim("b", 100)
    assert len(got_a) == 20 and len(got_b) == 30
    assert not {j.id for j in got_a} & {j.id for j in got_b}


def test_priority_first_then_submit_order(store: Store) -> None:
    store.submit_many(["low1", "low2"], priority=-1)
    store.submit_many(["mid1", "mid2"])
    store.submit("high", priority=10)
    assert [j.payload for j in store.claim("n", 10)] == ["high", "mid1", "mid2", "low1", "low2"]


def test_run_at_delays_a_job(store: Store) -> None:
    store.submit("later", run_at=time.time() + 0.5)
    store.submit("now")
    assert [j.payload for j in store.claim("n", 10)] == ["now"]
    stats = store.stats()
    assert (stats.ready, stats.delayed) == (0, 1)
    assert [j.payload for j in store.claim("n", 10, wait=HANG)] == ["later"]


def test_a_waiting_claim_wakes_on_a_submit(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    got: list[Job] = []
    waiter = threading.Thread(target=lambda: got.extend(a.claim("a", 5, wait=HANG)))
    waiter.start()
    time.sleep(0.1)  # let it wait first (the outcome holds either way)
    b.submit("from another handle")
    waiter.join(HANG)
    assert [j.payload for j in got] == ["from another handle"]


def test_a_waiting_claim_ends_empty_after_its_wait(store: Store) -> None:
    assert store.claim("n", 5, wait=0.05) == []


# -- per-key serialization -------------------------------------------------------------------------
def test_jobs_sharing_a_key_never_run_together_and_run_in_submit_order(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    a.submit_many([Submission(i, key="customer-7") for i in range(5)] + [Submission("other", key="customer-8")])
    a.submit("unkeyed")
    first = a.claim("a", 10)
    assert sorted(str(j.payload) for j in first) == ["0", "other", "unkeyed"]
    assert b.claim("b", 10) == []  # customer-7's next waits for 0
    order = [0]
    job = next(j for j in first if j.payload == 0)
    for expected in range(1, 5):
        assert a.ack(job).result(HANG)
        nxt = b.claim("b", 10)
        assert [j.payload for j in nxt] == [expected]
        job = nxt[0]
        order.append(job.payload)
    assert order == [0, 1, 2, 3, 4]


def test_a_retrying_keyed_job_holds_its_key(store: Store) -> None:
    store.submit_many([Submission("first", key="k"), Submission("second", key="k")])
    job = claim_one(store)
    assert store.fail(job, "boom", retry_in=0.3).result(HANG) == "retry"
    assert store.claim("n", 10) == []  # "first" is delayed; "second" may not overtake it
    assert [j.payload for j in store.claim("n", 10, wait=HANG)] == ["first"]


# -- leases, fencing -------------------------------------------------------------------------------
def test_renew_extends_the_nodes_leases_except_excluded(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    a.submit_many(range(3))
    mine = a.claim("a", 2, lease=0.5)
    theirs = b.claim("b", 1, lease=30.0)
    assert a.start(mine).result(HANG) == 2  # running: a lapse counts the attempt
    assert a.renew("a", 30.0, exclude=[mine[1].id]) == 1
    time.sleep(0.6)  # past the short lease (the outcome is what is asserted)
    taken = b.claim("b", 10, lease=30.0, wait=HANG)
    assert [j.id for j in taken] == [mine[1].id] and taken[0].attempt == 2
    assert a.ack(mine[0]).result(HANG) is True
    assert b.ack(theirs[0]).result(HANG) is True


def test_a_lapsed_lease_is_taken_back_and_the_late_ack_changes_nothing(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    job_id = a.submit({"long": True})
    stale = claim_one(a, "a", lease=0.2)
    assert a.start([stale]).result(HANG) == 1
    fresh = claim_one(b, "b", lease=30.0, wait=HANG)
    assert (fresh.id, fresh.attempt, fresh.node) == (job_id, 2, "b") and fresh.token != stale.token
    assert a.ack(stale).result(HANG) is False
    assert a.fail(stale, "late").result(HANG) == "fenced"
    assert a.release([stale]) == 0
    assert a.renew("a", 30.0) == 0
    assert a.stats().running == 1
    assert b.ack(fresh).result(HANG) is True
    assert a.stats() == Stats(0, 0, 0, 0, None)
    assert b.metrics().rescued + a.metrics().rescued == 1


def _held_with_one_lapsed(opener: Callable[[], Store], n: int) -> tuple[Store, Store, Job, list[Job], Job]:
    """Node a holds ``n`` jobs and one whose short lease lapsed; node b took that one. Returns
    (a, b, the lapsed claim, a's held jobs, b's claim of it)."""
    a, b = opener(), opener()
    a.submit("short")
    short = claim_one(a, "a", lease=0.2)
    a.submit_many(range(n))
    held = a.claim("a", n + 40, lease=30.0)
    taken = claim_one(b, "b", lease=30.0, wait=HANG)
    assert taken.id == short.id and len(held) == n
    return a, b, short, held, taken


def test_many_acks_at_once_with_one_late_among_them(opener: Callable[[], Store]) -> None:
    a, b, short, held, taken = _held_with_one_lapsed(opener, 149)
    results = [f.result(HANG) for f in [a.ack(job) for job in [*held, short]]]
    assert results == [True] * 149 + [False]
    assert a.stats().running == 1 and b.ack(taken).result(HANG) is True


def test_ack_many_acks_a_round_and_names_the_late_ones(opener: Callable[[], Store]) -> None:
    """One operation for many jobs, single acks beside it in the same commit, a late one among
    them named (and changing nothing), an empty round answered at once."""
    a, b, short, held, taken = _held_with_one_lapsed(opener, 60)
    singles = [a.ack(job) for job in held[:10]]
    rounds = [a.ack_many(held[10:35]), a.ack_many([*held[35:], short])]
    assert [f.result(HANG) for f in singles] == [True] * 10
    assert [f.result(HANG) for f in rounds] == [[], [short.id]]
    assert a.ack_many([]).result(HANG) == []
    assert a.stats().running == 1 and b.ack_many([taken]).result(HANG) == []
    assert a.stats() == Stats(0, 0, 0, 0, None)
    assert a.metrics().acked == 60 and a.metrics().fenced == 1


def test_a_job_whose_lease_lapses_on_its_last_attempt_is_dead(store: Store) -> None:
    store.submit("poison", max_attempts=2)
    assert store.start([claim_one(store, "dies-1", lease=0.5)]).result(HANG) == 1
    assert store.start([claim_one(store, "dies-2", lease=0.5, wait=HANG)]).result(HANG) == 1
    deadline = time.monotonic() + HANG
    while store.stats().dead == 0 and time.monotonic() < deadline:
        assert store.claim("n", 1, wait=0.2) == []
    [dead] = store.dead()
    assert dead.payload == "poison" and dead.attempts == 2
    assert [e.attempt for e in dead.errors] == [1, 2] and "lease" in dead.errors[-1].error


def test_release_makes_jobs_ready_at_once_without_counting_the_attempt(store: Store) -> None:
    store.submit_many(["a", "b"])
    jobs = store.claim("n", 2)
    assert store.release(jobs) == 2
    assert store.release(jobs) == 0  # fenced: no longer theirs
    again = store.claim("n2", 2)
    assert sorted(j.payload for j in again) == ["a", "b"] and {j.attempt for j in again} == {1}


def test_start_marks_the_jobs_still_held_under_their_token(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    a.submit_many(["x", "y", "z"])
    held = a.claim("a", 2, lease=30.0)
    assert a.start(held).result(HANG) == 2
    assert a.start(held).result(HANG) == 2  # again: still theirs, nothing changes
    assert a.start([]).result(HANG) == 0
    short = claim_one(a, "a", lease=0.2)
    taken = claim_one(b, "b", lease=30.0, wait=HANG)  # past the short lease
    assert taken.id == short.id
    assert a.start([short]).result(HANG) == 0  # fenced: the lease was lost
    assert b.start([taken]).result(HANG) == 1


def test_a_lapsed_job_never_started_gets_its_attempt_back(store: Store) -> None:
    ran_id, prefetched_id = store.submit_many(["ran", "prefetched"])
    held = store.claim("dies", 2, lease=0.5)
    [ran] = [j for j in held if j.id == ran_id]
    assert store.start([ran]).result(HANG) == 1
    again = store.claim("n", 2, lease=30.0, wait=HANG)
    deadline = time.monotonic() + HANG
    while len(again) < 2 and time.monotonic() < deadline:
        again += store.claim("n", 2 - len(again), lease=30.0, wait=0.2)
    assert {j.id: j.attempt for j in again} == {ran_id: 2, prefetched_id: 1}
    assert store.metrics().rescued == 2


def _after_lapse(store: Store, n: int) -> list[Job]:
    """The ``n`` jobs, claimed again (by node "n", unmarked, a long lease) once their lease ran out."""
    again: list[Job] = []
    deadline = time.monotonic() + HANG
    while len(again) < n and time.monotonic() < deadline:
        again += store.claim("n", n - len(again), lease=30.0, wait=0.2)
    assert len(again) == n, again
    return again


def test_a_claim_marks_its_first_jobs_started_in_claim_order(store: Store) -> None:
    for p in (1, 5, 3, 4, 2):
        store.submit(p, priority=p)
    held = store.claim("dies", 5, lease=0.3, start=2)
    assert [j.payload for j in held] == [5, 4, 3, 2, 1]  # claim order: highest priority first
    again = _after_lapse(store, 5)
    assert {j.payload: j.attempt for j in again} == {5: 2, 4: 2, 3: 1, 2: 1, 1: 1}  # only the marked count
    assert store.release(again) == 5
    held = store.claim("dies", 5, lease=0.3, start=9)  # more than it takes: all of them
    again = _after_lapse(store, 5)
    assert {j.payload: j.attempt for j in again} == {5: 3, 4: 3, 3: 2, 2: 2, 1: 2}
    assert store.release(again) == 5
    store.claim("dies", 5, lease=0.3, start=0)  # none (the default)
    again = _after_lapse(store, 5)
    assert {j.payload: j.attempt for j in again} == {5: 3, 4: 3, 3: 2, 2: 2, 1: 2}
    # a marked claim is fenced like any other: another node's claim of the lapsed jobs wins
    assert store.start(held).result(HANG) == 0


def test_a_partly_marked_claim_marks_the_first_of_what_it_took(store: Store) -> None:
    store.submit_many(["a", "b", "c"])
    store.submit("later", run_at=time.time() + 3600)  # not claimable: the claim takes 3 of 5 asked
    held = store.claim("dies", 5, lease=0.3, start=4)  # 4 < 5 asked, but more than the 3 taken: all
    assert [j.payload for j in held] == ["a", "b", "c"]
    again = _after_lapse(store, 3)
    assert {j.payload: j.attempt for j in again} == {"a": 2, "b": 2, "c": 2}


def test_an_unstarted_job_is_not_dead_lettered_by_a_lapse(store: Store) -> None:
    job_id = store.submit("claimed ahead", max_attempts=1)
    claim_one(store, "dies-1", lease=0.1)
    second = claim_one(store, "dies-2", lease=0.5, wait=HANG)
    assert (second.id, second.attempt) == (job_id, 1) and store.stats().dead == 0
    assert store.start([second]).result(HANG) == 1
    deadline = time.monotonic() + HANG
    while store.stats().dead == 0 and time.monotonic() < deadline:
        assert store.claim("n", 1, wait=0.2) == []
    [dead] = store.dead()
    assert dead.id == job_id and dead.attempts == 1 and [e.attempt for e in dead.errors] == [1]


# -- retries, dead letters -------------------------------------------------------------------------
def test_fail_retries_after_the_delay_then_dead_letters_with_the_history(store: Store) -> None:
    job_id = store.submit({"n": 1}, max_attempts=3, key="k", idempotency_key="i")
    for attempt in (1, 2):
        job = claim_one(store, wait=HANG)
        assert job.attempt == attempt
        assert store.fail(job, f"ValueError: try {attempt}", retry_in=0.05).result(HANG) == "retry"
    job = claim_one(store, wait=HANG)
    assert store.fail(job, "ValueError: try 3\nwith a second line").result(HANG) == "dead"
    assert store.stats() == Stats(0, 0, 0, 1, None)
    [dead] = store.dead()
    assert isinstance(dead, DeadJob)
    assert (dead.id, dead.payload, dead.key, dead.attempts, dead.idempotency_key) == (job_id, {"n": 1}, "k", 3, "i")
    assert [e.error for e in dead.errors] == ["ValueError: try 1", "ValueError: try 2",
                                              "ValueError: try 3 with a second line"]
    assert store.submit("dup", idempotency_key="i") == job_id  # the key still holds while dead
    store.requeue(job_id)
    assert store.dead() == []
    job = claim_one(store)
    assert (job.id, job.attempt, job.payload) == (job_id, 1, {"n": 1})
    with pytest.raises(UnknownJob):
        store.requeue(job_id)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("a __str__ that raises")


@pytest.mark.parametrize("error, kept", [
    ("FileNotFoundError: /in/name-\udcff.txt", "FileNotFoundError: /in/name-\\udcff.txt"),
    ("ValueError: a\0b", "ValueError: a\\0b"),
    ("é \ud800 €", "é \\ud800 €"),
    (_Unprintable(), "_Unprintable: <its message could not be made: RuntimeError>"),
])
def test_an_error_text_no_database_can_hold_is_kept_escaped(store: Store, error: Any, kept: str) -> None:
    """A handler's error becomes the job's history whatever its text: a lone surrogate (a message
    naming an undecodable file name) or a NUL is kept as its backslash escape, and an exception
    whose ``__str__`` raises is said so. Before, the surrogate ended SQLite's store thread."""
    store.submit_many(["retry", "dead"])
    jobs = {j.payload: j for j in store.claim("n1", 2)}
    assert store.fail(jobs["retry"], error, retry_in=0.0).result(HANG) == "retry"
    assert store.fail(jobs["dead"], error, dead=True).result(HANG) == "dead"
    [dead] = store.dead()
    assert [e.error for e in dead.errors] == [kept]
    assert claim_one(store, wait=HANG).payload == "retry"
    assert store.submit({"after": 1}) > 0  # the store goes on


def test_fail_can_dead_letter_at_once_and_default_retry_is_backoff(store: Store) -> None:
    store.submit_many(["bad", "retry"])
    jobs = {j.payload: j for j in store.claim("n", 2)}
    assert store.fail(jobs["bad"], "not retryable", dead=True).result(HANG) == "dead"
    assert store.fail(jobs["retry"], "transient").result(HANG) == "retry"
    stats = store.stats()
    assert (stats.dead, stats.delayed) == (1, 1)
    [info] = store.jobs("delayed")
    assert info.last_error == "transient" and info.attempts == 1
    assert info.run_at > time.time()


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    import random
    rng = random.Random(1)
    delays = [backoff(a, base=1.0, cap=100.0, rng=rng) for a in range(1, 12)]
    assert all(0.5 * min(100.0, 2 ** (a - 1)) <= d < 1.5 * min(100.0, 2 ** (a - 1))
               for a, d in zip(range(1, 12), delays, strict=True))
    assert len({round(backoff(3, rng=rng), 6) for _ in range(10)}) > 1


# -- reading ---------------------------------------------------------------------------------------
def test_stats_and_jobs_say_what_the_store_holds(store: Store) -> None:
    store.submit_many(["r1", "r2"])
    store.submit("d", run_at=time.time() + 3600)
    claim_one(store)
    time.sleep(0.01)
    stats = store.stats()
    assert (stats.ready, stats.running, stats.delayed, stats.dead) == (1, 1, 1, 0)
    assert stats.oldest_ready_age is not None and stats.oldest_ready_age > 0
    listed = {j.payload: j.state for j in store.jobs()}
    assert listed == {"r1": "running", "r2": "ready", "d": "delayed"}
    assert [j.payload for j in store.jobs("ready")] == ["r2"]
    assert len(store.jobs(limit=1)) == 1
    with pytest.raises(StoreError):
        store.jobs("done")


def test_metrics_count_what_was_committed(store: Store) -> None:
    store.submit_many(range(10))
    for job in store.claim("n", 10):
        store.ack(job)
    store.flush(HANG)
    m = store.metrics()
    assert (m.submitted, m.acked, m.fenced) == (10, 10, 0)
    assert m.commits >= 1 and m.committed_ops >= m.commits


# -- closing ---------------------------------------------------------------------------------------
def test_close_commits_what_is_pending_and_then_refuses(opener: Callable[[], Store]) -> None:
    store = opener()
    store.submit_many(range(3))
    futures = [store.ack(j) for j in store.claim("n", 3)]
    store.close()
    assert [f.result(HANG) for f in futures] == [True] * 3
    with pytest.raises(StoreClosed):
        store.submit("after close")
    store.close()  # idempotent
    assert opener().stats() == Stats(0, 0, 0, 0, None)


def test_a_store_is_a_context_manager(opener: Callable[[], Store]) -> None:
    with opener() as store:
        store.submit("x")
    with pytest.raises(StoreClosed):
        store.submit("y")


# -- URLs (store-independent) ----------------------------------------------------------------------
def test_urls_are_parsed_and_passwords_never_shown() -> None:
    assert parse_url("sqlite:////var/lib/app/jobs.sqlite3").path == "/var/lib/app/jobs.sqlite3"
    assert parse_url("sqlite:///jobs.sqlite3?poll=0.1").options == {"poll": "0.1"}
    assert parse_url("/plain/path.sqlite3").scheme == "sqlite"
    assert redact("postgresql://app:s3cret@db:5432/jobs") == "postgresql://app:***@db:5432/jobs"
    assert "s3cret" not in redact("postgresql://db/jobs?password=s3cret&sslmode=require")
    assert redact("sqlite:////x.sqlite3") == "sqlite:////x.sqlite3"
    for bad in ("sqlite://host/x", "sqlite:///", ""):
        with pytest.raises(StoreError):
            parse_url(bad)
    with pytest.raises(StoreError) as caught:
        open_store("nosuch://u:s3cret@h/x")
    assert "s3cret" not in str(caught.value)


# -- complete: the work's writes and the ack in one transaction (the optional exactly-once) -------------
def _table() -> str:
    """A table of the test's own (the application's, beside the store's: one database)."""
    return f"app_effects_{uuid.uuid4().hex[:12]}"


def _write(table: str, job: Job, note: str) -> Callable[[Any], int]:
    """The work a handler does in the store's transaction: a row in its own table (plain SQL that
    SQLite and PostgreSQL both take, values inlined: the drivers' placeholders differ)."""
    def work(conn: Any) -> int:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (job BIGINT, note TEXT)")
        conn.execute(f"INSERT INTO {table} VALUES ({int(job.id)}, '{note}')")
        return job.id
    return work


def _effects(store: Store, table: str) -> list[tuple[int, str]]:
    """What the handlers' transactions left, read through a completion of a job of its own."""
    probe = store.submit({"probe": True})
    job = claim_one(store, "reader")
    assert job.id == probe

    def read(conn: Any) -> list[tuple[int, str]]:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (job BIGINT, note TEXT)")
        return sorted((int(a), str(b)) for a, b in conn.execute(f"SELECT job, note FROM {table}").fetchall())
    return store.complete(job, read, timeout=HANG)


def test_complete_commits_the_work_with_the_ack(store: Store) -> None:
    table = _table()
    job_id = store.submit({"n": 1}, idempotency_key="once")
    job = claim_one(store)
    assert store.complete(job, _write(table, job, "done"), timeout=HANG) == job_id
    assert store.stats() == Stats(0, 0, 0, 0, None)  # acked: gone from the hot table
    assert store.submit({"n": 1}, idempotency_key="once") == job_id  # done, as after an ack
    assert store.ack(job).result(HANG) is False  # nothing left to ack
    assert _effects(store, table) == [(job_id, "done")]
    assert store.metrics().acked >= 1


def test_complete_rolls_back_the_work_when_it_raises_and_keeps_the_job(store: Store) -> None:
    table = _table()
    job_id = store.submit({"n": 1})
    job = claim_one(store)

    def broken(conn: Any) -> None:
        _write(table, job, "half")(conn)
        raise ValueError("the handler broke after writing")

    with pytest.raises(ValueError, match="the handler broke"):
        store.complete(job, broken, timeout=HANG)
    assert store.stats().running == 1  # still held: the intake fails it as usual
    assert store.fail(job, "ValueError: broke", retry_in=0).result(HANG) == "retry"
    again = claim_one(store, wait=HANG)
    assert (again.id, again.attempt) == (job_id, 2)
    assert store.complete(again, _write(table, again, "second"), timeout=HANG) == job_id
    assert _effects(store, table) == [(job_id, "second")]  # the first attempt's row never landed


def test_complete_after_the_lease_was_lost_rolls_back_and_says_so(opener: Callable[[], Store]) -> None:
    a, b = opener(), opener()
    table = _table()
    job_id = a.submit({"long": True})
    stale = claim_one(a, "a", lease=0.2)
    assert a.start([stale]).result(HANG) == 1
    fresh = claim_one(b, "b", lease=30.0, wait=HANG)  # taken back once the lease lapsed
    assert fresh.id == job_id
    with pytest.raises(LeaseLost):
        a.complete(stale, _write(table, stale, "late"), timeout=HANG)
    assert b.complete(fresh, _write(table, fresh, "owner"), timeout=HANG) == job_id
    assert _effects(b, table) == [(job_id, "owner")]  # exactly once: the late node's write is not there


def _overwrite_payload(store: Store, request: pytest.FixtureRequest, job_id: int, text: str) -> None:
    """Write ``text`` as a job's stored payload from outside servicehost (another program, or
    damage): plain SQL on the store's own database."""
    if hasattr(store, "path"):  # SQLite
        import sqlite3

        conn = sqlite3.connect(store.path)
        conn.execute("UPDATE jobs SET payload = ? WHERE id = ?", (text, job_id))
        conn.commit()
        conn.close()
    else:
        cluster = request.getfixturevalue("pg_cluster")
        schema = store.schema  # type: ignore[attr-defined]
        cluster.sql(f'UPDATE "{schema}".jobs SET payload = %s WHERE id = %s', (text, job_id), dbname="servicehost")


@pytest.mark.parametrize("damaged", ["{not json", "", '{"a": 1'])
def test_a_payload_damaged_outside_the_store_is_dead_lettered_and_every_other_job_claimed(
        store: Store, request: pytest.FixtureRequest, damaged: str) -> None:
    """A claim that meets a job whose stored payload is not JSON goes on without it: the job is
    dead-lettered unread, saying why, and listed with its stored text. Before, on SQLite, the
    claim's statement failed on it, and so did every later claim: the intake took nothing more."""
    ids = store.submit_many([{"n": i} for i in range(6)])
    _overwrite_payload(store, request, ids[2], damaged)
    got: list[Job] = []
    end = time.monotonic() + HANG
    while len(got) < 5 and time.monotonic() < end:
        got += store.claim("n1", 10, wait=0.2)
    assert sorted(j.id for j in got) == ids[:2] + ids[3:]
    assert all(store.ack(j).result(HANG) for j in got)
    end = time.monotonic() + HANG
    while not store.dead() and time.monotonic() < end:  # the dead-letter is committed by the store's thread
        threading.Event().wait(0.05)
    [dead] = store.dead()
    assert (dead.id, dead.payload) == (ids[2], damaged)
    assert [e.error for e in dead.errors] == [UNREADABLE_PAYLOAD]
    assert store.stats().ready == 0 and [j.id for j in store.jobs()] == []
    after = store.submit({"after": 1})
    assert claim_one(store).id == after  # claims go on


def test_a_payload_past_the_stores_limit_is_refused_alone(store: Store) -> None:
    """``max_payload_bytes`` (by default what the database binds at most) is checked on the
    caller's thread, payload by payload, in UTF-8 bytes. Before, a value too big for the database
    failed the whole group commit: every other caller's submits in it too, with an error that
    said to retry (StoreUnavailable)."""
    small = open_store(store.url, max_payload_bytes=1000)  # type: ignore[attr-defined]
    try:
        for too_big in ("x" * 1000, "é" * 600, b"x" * 1001, {"k": "v" * 1000}, ["€" * 400]):
            with pytest.raises(PayloadError, match="1000 bytes"):
                small.submit(too_big)
            with pytest.raises(PayloadError, match="1000 bytes"):
                small.submit_many([{"n": 1}, too_big])
        fits = ["x" * 998, "é" * 300, b"x" * 1000, {"k": "v" * 990}]
        ids = [small.submit(p) for p in fits] + small.submit_many([{"k": "v" * 990}] * 5)  # a batch past 1000: fine
        got = {j.id: j.payload for j in small.claim("n1", 100)}
        assert [got[i] for i in ids] == fits + [{"k": "v" * 990}] * 5
    finally:
        small.close()


def test_keys_and_nodes_of_1024_bytes_are_taken_and_indexed(store: Store) -> None:
    """The limit itself (MAX_KEY_BYTES, UTF-8) is taken, with text that does not compress (a
    PostgreSQL index row holds 2704 bytes at most: a longer key failed the whole group commit)."""
    assert MAX_KEY_BYTES == 1024
    key, idem = uuid.uuid4().hex * 32, ("é" + uuid.uuid4().hex[:1]) * 341 + "x"  # 1024 bytes each
    assert len(key.encode()) == len(idem.encode()) == 1024
    job_id = store.submit({"n": 1}, key=key, idempotency_key=idem)
    assert store.submit({"n": 2}, idempotency_key=idem) == job_id
    job = claim_one(store, node="n" * 1024)
    assert (job.id, job.key) == (job_id, key)
    assert store.ack(job).result(HANG)
