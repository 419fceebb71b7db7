"""The Intake as a component, in process on a real SQLite file: a stop gives the claimed jobs that
did not start back at once (ready again without waiting for a lease), a pause gives the buffer
back, the counters carry the intake's fields, and a service composes it with ``use``; the example
service and ``servicehost jobs`` on its embedded default store, in real processes."""

from __future__ import annotations

import math
import signal
import threading

import pytest

from servicehost import Intake
from servicehost.intake import default_url, open_store
from servicehost.stopping import Deadline

from ..integration.proc import EXAMPLES, ServiceProcess, run_cli
from .intakes import runs, start, store_url, wait_until


def test_a_stop_gives_claimed_jobs_that_did_not_start_back_at_once(tmp_path):
    url = store_url(tmp_path)
    gate, started = threading.Event(), threading.Event()

    def handler(job):  # type: ignore[no-untyped-def]
        started.set()
        gate.wait(60)

    with open_store(url) as store:
        store.submit_many([{"n": i} for i in range(10)])
    intake = Intake(handler, store=url, workers=1, prefetch=4, lease=600)  # a lease far longer than the test
    intake.start()
    assert started.wait(60)
    wait_until(lambda: intake.counters().queue_depth == 4, 60, "the prefetch is claimed")
    intake.close()
    drained = threading.Thread(target=intake.drain, args=(Deadline.after(60),))
    drained.start()
    with open_store(url) as store:  # the four prefetched jobs are ready again now, not after the lease
        wait_until(lambda: store.stats().ready == 9 and store.stats().running == 1, 60, "the prefetched jobs are back")
    gate.set()
    drained.join(60)
    with open_store(url) as store:
        s = store.stats()
        assert (s.ready, s.running) == (9, 0)
        assert all(j.attempts == 0 for j in store.jobs("ready"))  # a release does not count the attempt


def test_counters_and_pause(tmp_path):
    url = store_url(tmp_path)
    done: list[int] = []
    with open_store(url) as store:
        ids = store.submit_many([{"n": i} for i in range(50)])
        store.submit({"fail": True}, max_attempts=1)

    def handler(job):  # type: ignore[no-untyped-def]
        if job.payload.get("fail"):
            raise ValueError("no")
        done.append(job.id)

    with Intake(handler, store=url, workers=2, lease=30) as intake:
        wait_until(lambda: len(done) == len(ids), 60, "every job runs")
        wait_until(lambda: intake.counters().dead_letters == 1, 60, "the failing job is dead-lettered")
        c = intake.counters()
        assert (c.completed, c.failed, c.queue_depth, c.workers) == (50, 1, 0, 2)
        assert c.depth == 0 and c.commit_batch is not None and c.commit_batch >= 1
        intake.pause()
        with open_store(url) as store:
            store.submit_many([{"n": i} for i in range(5)])
            wait_until(lambda: store.stats().ready == 5 and store.stats().running == 0, 60,
                       "a paused intake holds no job")
        intake.resume()
        wait_until(lambda: len(done) == len(ids) + 5, 60, "resumed, it runs them")
    assert sorted(done)[: len(ids)] == sorted(ids)


def test_the_example_and_jobs_on_its_embedded_default_store(tmp_path):
    state = tmp_path / "state"
    example = str(EXAMPLES / "jobs.py")
    with ServiceProcess("run", example, "--state-dir", str(state), "--log-file", "none") as svc:
        svc.ready()
        sub = run_cli("jobs", example, "submit", '{"name": "Ada"}', SERVICEHOST_STATE_DIR=str(state))
        assert sub.returncode == 0, sub.stderr
        job = int(sub.stdout)
        out = state / "out" / f"{job}.txt"
        wait_until(out.exists, 60, "the job's file is written")
        assert out.read_text().startswith("Hello, Ada!")
        stats = run_cli("jobs", example, "stats", SERVICEHOST_STATE_DIR=str(state))
        assert stats.returncode == 0 and default_url(state) in stats.stdout and "ready:       0" in stats.stdout
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0, "\n".join(svc.output())


def test_a_kill_charges_an_attempt_to_the_jobs_marked_started_not_to_the_whole_prefetch(tmp_path):
    gate = tmp_path / "gate"  # never opened: the one worker stays in its first job
    with open_store(store_url(tmp_path)) as store:
        held = store.submit({"gate": str(gate)}, priority=10)
        ahead = store.submit_many([{"sleep": 0} for _ in range(30)])
        svc = start(tmp_path, "--workers", "1", "--prefetch", "40", "--lease", "1")
        with svc:
            wait_until(lambda: any(r.job == held for r in runs(tmp_path)), 60, "the gated job runs")
            wait_until(lambda: store.stats().running == 31, 60, "every job is claimed")
            svc.signal(signal.SIGKILL)
            assert svc.wait() == -signal.SIGKILL
        taken: list = []  # claimed again once their leases ran out
        wait_until(lambda: taken.extend(store.claim("after", 31, lease=60, wait=0.2)) or len(taken) == 31, 60,
                   "the dead node's jobs are taken back")
    attempts = {job.id: job.attempt for job in taken}
    assert attempts[held] == 2  # it ran: its death counted
    charged = [i for i in ahead if attempts[i] == 2]
    # at most what the claimer marked ahead of the one worker (two rounds of what it took, at least one)
    assert len(charged) <= 2, charged
    assert [attempts[i] for i in ahead if i not in charged] == [1] * (len(ahead) - len(charged))


def test_the_default_prefetch_stays_shallow_for_slow_handlers_and_grows_for_fast_ones(tmp_path):
    url = store_url(tmp_path)
    slow = threading.Event()
    slow.set()
    done: list[int] = []
    depths: list[int] = []

    def handler(job):  # type: ignore[no-untyped-def]
        if slow.is_set():  # a handler that takes a while
            threading.Event().wait(0.05)
        done.append(job.id)

    with open_store(url) as store:
        store.submit_many([{"n": i} for i in range(2000)])
    with Intake(handler, store=url, workers=2, lease=30) as intake:  # the default prefetch: up to 64 ahead
        wait_until(lambda: len(done) >= 20, 60, "slow jobs run")
        for _ in range(20):
            depths.append(intake.counters().queue_depth)
            threading.Event().wait(0.02)
        assert max(depths) <= 16, depths  # a few rounds of one or two jobs each, not 64
        slow.clear()  # now they take no time: the claims get deep
        wait_until(lambda: depths.append(intake.counters().queue_depth) or len(done) == 2000, 60, "every job runs",
                   every=0.001)
        assert max(depths[20:]) > 16, depths[20:]


def test_the_default_prefetch_holds_fewer_big_payloads_ahead(tmp_path, monkeypatch):
    from servicehost.intake import component

    monkeypatch.setattr(component, "PREFETCH_BYTES", 1 << 19)  # 512 KiB ahead: 32 jobs of 16 KiB
    url = store_url(tmp_path)
    done: list[int] = []
    depths: list[int] = []
    with open_store(url) as store:
        store.submit_many(["x" * 16384] * 1500)
    with Intake(lambda job: done.append(job.id), store=url, workers=2, lease=30) as intake:
        wait_until(lambda: depths.append(intake.counters().queue_depth) or len(done) == 1500, 60, "every job runs",
                   every=0.001)
    # fast handlers would take claims of up to 2 workers + 64 ahead; the bytes bound keeps 32 ahead
    # (a few more at first, while the size estimate converges from the first claims)
    assert max(depths[len(depths) // 4:]) <= 2 + 32 + 2, max(depths)
    assert max(depths) > 8, max(depths)  # still claims ahead, not one by one


def test_acks_left_in_a_round_by_busy_workers_are_sent_while_they_stay_busy(tmp_path):
    """A worker that ran quick jobs takes a long one while more are claimed: the quick jobs' acks
    gathered in its round must not wait for the long one to end (the renewer sends the round)."""
    url = store_url(tmp_path)
    gate, long_started = threading.Event(), threading.Event()

    def handler(job):  # type: ignore[no-untyped-def]
        if job.payload == "long":
            long_started.set()
            gate.wait(120)

    with open_store(url) as store:
        quick = store.submit_many(["quick"] * 300)
        long, = store.submit_many(["long"])
        store.submit_many(["later"] * 20)
    intake = Intake(handler, store=url, workers=1, lease=600)
    intake.start()
    try:
        assert long_started.wait(60)
        with open_store(url) as store:  # every quick job leaves the store while the long one runs
            wait_until(lambda: not {j.id for j in store.jobs(limit=1000)} & set(quick), 60, "the quick jobs' acks")
            assert long in {j.id for j in store.jobs(state="running")}
    finally:
        gate.set()
        intake.close()
        assert intake.drain(Deadline.after(60)) is None


def test_answers_read_by_the_renewer_and_the_drain_at_once_are_each_read_once(tmp_path, caplog):
    """The drain's last read of the ack answers may overlap the renewer's (it ends at its next
    wake): each answer must be counted and logged once, and neither thread may fail (a renewer that
    died of it renewed no lease again). Many threads read many answered rounds at once, with the
    interpreter switching threads as often as it can."""
    import logging
    import sys
    from concurrent.futures import Future

    from servicehost.intake.store import Job

    intake = Intake(lambda job: None, store=store_url(tmp_path), workers=1)
    n = 20_000
    for i in range(n):  # ack rounds of one job each, the job fenced (its lease was lost)
        job = Job(i, None, 1, None, 0, 5, 7, "node", 0.0, 0.0)
        answer: Future[list[int]] = Future()
        answer.set_result([i])
        intake._pending.append(([job], answer))
    errors: list[BaseException] = []

    def settle() -> None:
        try:
            intake._settle()
        except BaseException as exc:  # what the renewer would have died of
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with caplog.at_level(logging.INFO, logger="servicehost"):
            readers = [threading.Thread(target=settle) for _ in range(4)]
            for t in readers:
                t.start()
            for t in readers:
                t.join(120)
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors
    assert intake._fenced == n
    logged = [r for r in caplog.records if "after its lease was lost" in r.getMessage()]
    assert len(logged) == n, len(logged)
    assert len({r.getMessage() for r in logged}) == n  # each job's once


BAD_INTAKE_OPTIONS = [
    {"workers": 0}, {"workers": 2.5}, {"workers": True}, {"max_attempts": 0}, {"max_attempts": 2**31},
    {"max_attempts": "3"}, {"prefetch": 1.5}, {"lease": 0}, {"lease": math.nan}, {"lease": math.inf},
    {"lease": 10**400}, {"lease": "60"}, {"retry_base": -1}, {"retry_base": math.nan}, {"retry_cap": math.inf},
    {"hang_timeout": math.nan}, {"hang_timeout": -5},
]


@pytest.mark.parametrize("bad", BAD_INTAKE_OPTIONS, ids=[repr(b)[:30] for b in BAD_INTAKE_OPTIONS])
def test_a_bad_intake_option_is_refused_when_it_is_made_naming_it(tmp_path, bad):
    """Before, a NaN retry delay or an infinite lease was taken, and every claim, renewal or retry
    that used it was then refused by the store: jobs came back only when their lease ran out."""
    with pytest.raises(ValueError) as refused:
        Intake(lambda job: None, store=store_url(tmp_path), **bad)
    assert next(iter(bad)) in str(refused.value)
    Intake(lambda job: None, store=store_url(tmp_path), hang_timeout=None, prefetch=0)  # the edges are fine


@pytest.mark.parametrize("handler, store, said", [
    (None, None, "handler must be callable"), (5, None, "handler must be callable"),
    ("handle", None, "handler must be callable"),
    (print, "ftp://host/jobs", "no store for 'ftp'"), (print, "", "not a store URL"),
    (print, 5, "store must be a Store"), (print, b"/tmp/jobs.sqlite3", "store must be a Store"),
    (print, "sqlite://", "needs a file path"),
])
def test_a_handler_or_store_that_cannot_work_is_refused_when_the_intake_is_made(tmp_path, handler, store, said):
    """Before, these were taken: the store URL failed only when the service started, and a handler
    that is not callable failed every job until each was dead-lettered."""
    with pytest.raises((TypeError, ValueError), match=said):
        Intake(handler, store=store_url(tmp_path) if store is None else store)


# -- runs: a worker whose handlers are short takes a few jobs at once ---------------------------------
def _quick_long_quick(url: str) -> tuple[list[int], int, list[int]]:
    """400 quick jobs, a long one, 400 quick ones: the long one lands in some worker's run."""
    with open_store(url) as store:
        before = store.submit_many(["quick"] * 400)
        long, = store.submit_many(["long"])
        return before, long, store.submit_many(["quick"] * 400)


def test_a_long_job_in_a_run_holds_up_neither_the_rest_of_the_run_nor_its_acks(tmp_path):
    """Short jobs are taken in runs (a worker runs a few in order without the shared lock). One
    that turns out long must not keep the jobs after it in its run from the other workers, nor
    the acks of those before it: the renewer hands both on while it runs."""
    url = store_url(tmp_path)
    gate, long_started = threading.Event(), threading.Event()
    done: list[int] = []
    before, long, after = _quick_long_quick(url)

    def handler(job):  # type: ignore[no-untyped-def]
        if job.payload == "long":
            long_started.set()
            gate.wait(120)
        done.append(job.id)

    intake = Intake(handler, store=url, workers=2, lease=600)
    intake.start()
    try:
        assert long_started.wait(60)
        others = set(before) | set(after)
        wait_until(lambda: others <= set(done), 60, "every other job runs while the long one does")
        with open_store(url) as store:  # ... and is acked: only the long one is left
            wait_until(lambda: {j.id for j in store.jobs(limit=1000)} == {long}, 60, "the other jobs' acks")
    finally:
        gate.set()
        intake.close()
        assert intake.drain(Deadline.after(60)) is None
    assert sorted(done) == sorted([*before, long, *after])  # each once


@pytest.mark.parametrize("stop_after", [0, 50, 300, 700])
def test_a_stop_in_the_middle_of_runs_loses_and_repeats_nothing(tmp_path, stop_after):
    """Workers take runs and pop them without the lock while the drain takes them back: each job
    must end one way, run once (and acked) or back in the store, ready at once (none left
    running until a lease runs out), with the interpreter switching threads as often as it can."""
    import sys

    url = store_url(tmp_path)
    ran: list[int] = []
    enough = threading.Event()

    def handler(job):  # type: ignore[no-untyped-def]
        ran.append(job.id)
        if len(ran) >= stop_after:
            enough.set()

    with open_store(url) as store:
        ids = store.submit_many([{"n": i} for i in range(2000)])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        intake = Intake(handler, store=url, workers=4, lease=600)
        intake.start()
        assert enough.wait(60)
        intake.close()
        assert intake.drain(Deadline.after(60)) is None
    finally:
        sys.setswitchinterval(interval)
    assert len(ran) == len(set(ran)), "a job ran twice"
    with open_store(url) as store:
        left = store.jobs(limit=5000)
    assert all(j.state == "ready" for j in left), [j for j in left if j.state != "ready"][:5]
    assert sorted([*ran, *(j.id for j in left)]) == sorted(ids)  # each job one way: ran (acked) or back
    assert all(j.attempts == 0 for j in left)  # given back: their claims' attempts too


def test_a_stop_while_a_long_job_runs_gives_the_rest_of_its_run_back_at_once(tmp_path):
    url = store_url(tmp_path)
    gate, long_started = threading.Event(), threading.Event()
    _, long, _ = _quick_long_quick(url)

    def handler(job):  # type: ignore[no-untyped-def]
        if job.payload == "long":
            long_started.set()
            gate.wait(120)

    intake = Intake(handler, store=url, workers=2, lease=600)  # a lease far longer than the test
    intake.start()
    assert long_started.wait(60)
    intake.close()
    drained = threading.Thread(target=intake.drain, args=(Deadline.after(120),))
    drained.start()
    try:
        with open_store(url) as store:  # all but the long job: done, or ready again now (not after the lease)
            wait_until(lambda: [j.id for j in store.jobs(state="running")] == [long], 60, "the rest is back")
    finally:
        gate.set()
        drained.join(120)
    assert not drained.is_alive()


def test_jobs_list_and_dead_show_keys_and_errors_escaped_one_line_each(tmp_path):
    """Keys and error texts are what producers and handlers chose: a newline in one must not
    forge a line of ``jobs list``/``dead``, nor a terminal escape act on the admin's terminal."""
    url = store_url(tmp_path)
    key, error = "k\nFORGED\tline\x1b[2J", "Boom \x1b]0;title\x07 \x1b[31mred"
    with open_store(url) as store:
        live = store.submit({"x": "\x1b[31m"}, key=key)
        dead = store.submit(1, key="dead\r")
        job = next(j for j in store.claim("n1", 10) if j.id == dead)
        assert store.fail(job, error, dead=True).result(30) == "dead"
    example = str(EXAMPLES / "jobs.py")
    listed = run_cli("jobs", example, "list", "--store", url)
    shown = run_cli("jobs", example, "dead", "--store", url)
    assert listed.returncode == 0 and shown.returncode == 0, listed.stderr + shown.stderr
    for out in (listed.stdout, shown.stdout):
        assert not any(c in out for c in "\x1b\x07\r"), repr(out)
    [line] = listed.stdout.splitlines()
    assert line.startswith(f"{live}\t") and "key=k\\nFORGED\\tline\\x1b[2J\t" in line
    assert shown.stdout.splitlines() == [f"{dead}\tattempts=1\tkey=dead\\r\t1",
                                         "    attempt 1: Boom \\x1b]0;title\\x07 \\x1b[31mred"]


@pytest.mark.parametrize("args, code, said", [
    (["requeue", "424242"], 2, "no dead job 424242"),
    (["submit", "[1,"], 2, "the payload is not JSON"),
    (["submit", "1", "--priority", "1.5"], 2, "--priority"),
    (["stats", "--store", "ftp://host/x"], 2, "no store for 'ftp'"),
    (["stats", "--store", "{url}?bogus=1"], 2, "unknown option 'bogus'"),
    (["stats", "--store", "{url}?bogus=1", "--json"], 2, "unknown option 'bogus'"),  # checked, the file missing
    (["submit", "1", "--store", "sqlite:////proc/no/such/dir/jobs.sqlite3"], 1, "cannot create it"),
    (["stats", "--store", "sqlite:///{tmp}"], 1, "not a regular file"),
])
def test_jobs_answers_a_bad_command_line_with_exit_2_and_the_store_failing_with_exit_1(tmp_path, args, code, said):
    """What the command line named is wrong (the job, the payload, an option, the --store URL):
    exit 2, one line, as any bad option. The store itself failing: exit 1."""
    url = store_url(tmp_path)
    argv = [a.replace("{url}", url).replace("{tmp}", str(tmp_path)) for a in args]
    if "--store" not in argv:
        argv += ["--store", url]
    proc = run_cli("jobs", str(EXAMPLES / "jobs.py"), *argv)
    assert proc.returncode == code, proc.stderr
    [line] = proc.stderr.splitlines()
    assert said in line and "Traceback" not in proc.stderr


def test_a_look_at_a_store_not_made_yet_makes_nothing(tmp_path):
    """``jobs stats|list|dead`` on an embedded store whose file does not exist yet answer an
    empty store and create nothing: run by root before the service's first start, the file (and
    its folder) would have been root's, and the service, running as its own account, could not
    open its store. ``requeue`` there is a bad command line (exit 2)."""
    url = f"sqlite:///{tmp_path / 'state' / 'jobs.sqlite3'}"
    example = str(EXAMPLES / "jobs.py")
    stats = run_cli("jobs", example, "stats", "--json", "--store", url)
    assert stats.returncode == 0, stats.stderr
    assert __import__("json").loads(stats.stdout) == {
        "store": url, "ready": 0, "running": 0, "delayed": 0, "dead": 0, "oldest_ready_age": None, "exists": False}
    for action in ("list", "dead"):
        shown = run_cli("jobs", example, action, "--json", "--store", url)
        assert (shown.returncode, shown.stdout.strip()) == (0, "[]"), shown.stderr
    requeue = run_cli("jobs", example, "requeue", "7", "--store", url)
    assert requeue.returncode == 2 and "holds no store yet" in requeue.stderr
    assert not (tmp_path / "state").exists()
    submitted = run_cli("jobs", example, "submit", "1", "--store", url)  # a submit makes it
    assert submitted.returncode == 0 and (tmp_path / "state" / "jobs.sqlite3").exists(), submitted.stderr
