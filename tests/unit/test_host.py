import threading
import time

import pytest

from servicehost.config import HostConfig
from servicehost.errors import ExitCode, IllegalTransition, StartupError
from servicehost.host import Host
from servicehost.lifecycle import HostState
from servicehost.service import Service
from servicehost.workers.thread_pool import ThreadPool

HANG_GUARD = 30  # seconds: only to keep a broken test from hanging the run


class Recorder(Service):
    def __init__(self, name, journal, **kw):
        self.name = name
        super().__init__()
        self.journal = journal
        self.kw = kw

    def start(self):
        self.journal.append(f"start {self.name}")
        if self.kw.get("fail_start"):
            raise RuntimeError("cannot open")

    def stop(self, deadline):
        self.journal.append(f"stop {self.name}")
        if self.kw.get("fail_stop"):
            raise RuntimeError("stop failed")

    def pause(self):
        self.journal.append(f"pause {self.name}")

    def resume(self):
        self.journal.append(f"resume {self.name}")

    def reload(self):
        self.journal.append(f"reload {self.name}")

    def control(self, code):
        self.journal.append(f"control {self.name} {code}")


def run_in_thread(host):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("code", host.run()), daemon=True)
    t.start()
    return t, out


def wait_running(host):
    assert host.lifecycle.wait_for({HostState.RUNNING, HostState.FAILED, HostState.STOPPED}, HANG_GUARD)


def test_start_in_order_stop_in_reverse_and_every_stop_runs():
    journal = []
    host = Host([Recorder("a", journal), Recorder("b", journal, fail_stop=True), Recorder("c", journal)])
    t, out = run_in_thread(host)
    wait_running(host)
    host.request_stop("test")
    t.join(HANG_GUARD)
    assert journal == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert out["code"] is ExitCode.OK  # a failing stop() is logged and collected, not a crash
    assert len(host.report.errors) == 1
    assert host.state is HostState.STOPPED


def test_a_failed_start_stops_what_started_and_returns_start_failure():
    journal = []
    host = Host([Recorder("a", journal), Recorder("b", journal, fail_start=True), Recorder("c", journal)])
    assert host.run() is ExitCode.START_FAILURE
    assert journal == ["start a", "start b", "stop b", "stop a"]
    assert host.state is HostState.FAILED


def test_host_is_running_only_when_every_service_said_ready():
    gate = threading.Event()

    class Slow(Service):
        ready_on_start = False

        def run(self, stop):
            gate.wait(HANG_GUARD)
            self.ready()
            stop.wait()

    host = Host([Slow()])
    t, out = run_in_thread(host)
    time.sleep(0.1)
    assert host.state is HostState.STARTING
    gate.set()
    wait_running(host)
    assert host.state is HostState.RUNNING
    host.request_stop()
    t.join(HANG_GUARD)
    assert out["code"] is ExitCode.OK


def test_not_ready_in_time_is_a_start_failure():
    class Never(Service):
        ready_on_start = False

    host = Host([Never()], HostConfig(start_timeout=0.2))
    with pytest.raises(StartupError, match="not ready after start_timeout"):
        host.start()
    assert host.wait() is ExitCode.START_FAILURE


def test_an_exception_escaping_run_fails_the_host_with_crash():
    class Crashy(Service):
        def run(self, stop):
            raise KeyError("boom")

    host = Host([Crashy()])
    assert host.run() is ExitCode.CRASH
    assert host.state is HostState.FAILED


def test_run_returning_stops_the_host_cleanly():
    class Once(Service):
        def run(self, stop):
            return

    assert Host([Once()]).run() is ExitCode.OK


def test_busy_pool_drains_on_stop_and_nothing_is_lost():
    done = []

    class Busy(Service):
        def start(self):
            self.pool = self.use(ThreadPool(4))
            self.pool.submit_many(lambda i: (time.sleep(0.002), done.append(i)), range(400), chunksize=1)

    host = Host([Busy()], HostConfig(shutdown_timeout=HANG_GUARD))
    host.start()
    host.request_stop()
    assert host.wait() is ExitCode.OK
    assert sorted(done) == list(range(400))


def test_stop_deadline_reports_unfinished_work_and_is_not_a_failure():
    release = threading.Event()
    handed = []

    class Stuck(Service):
        def start(self):
            self.pool = self.use(ThreadPool(1, on_unfinished=handed.extend))
            self.pool.submit(release.wait)
            for i in range(5):
                self.pool.submit(print, i)

    host = Host([Stuck()], HostConfig(shutdown_timeout=0.3))
    host.start()
    time.sleep(0.05)
    host.request_stop()
    code = host.wait()
    release.set()
    assert code is ExitCode.STOP_INCOMPLETE and not code.is_failure
    [left] = host.report.unfinished
    assert (left.queued, left.running, left.handed_back) == (5, 1, True)
    assert len(handed) == 5
    assert host.state is HostState.STOPPED


def test_a_second_request_forces_the_stop_before_the_deadline():
    release = threading.Event()

    class SlowStop(Service):
        def stop(self, deadline):
            release.wait(HANG_GUARD)

    host = Host([SlowStop()], HostConfig(shutdown_timeout=HANG_GUARD))
    host.start()
    host.request_stop("first")
    threading.Timer(0.1, host.request_stop, args=("second",)).start()
    started = time.monotonic()
    code = host.wait()
    release.set()
    for thread in threading.enumerate():  # its last log line, while this test's output is captured
        if thread.name == "servicehost-stopper":
            thread.join(HANG_GUARD)
    assert code is ExitCode.STOP_INCOMPLETE
    assert host.report.forced and host.report.still_stopping == ["SlowStop"]
    assert time.monotonic() - started < HANG_GUARD


def test_pause_resume_reload_control_reach_every_service_and_pools():
    journal = []
    host = Host([Recorder("a", journal), Recorder("b", journal)])
    pool = host.services[0].use(ThreadPool(1))
    host.start()
    host.pause()
    assert host.state is HostState.PAUSED and pool.paused
    with pytest.raises(IllegalTransition):
        host.pause()
    host.resume()
    assert host.state is HostState.RUNNING and not pool.paused
    host.reload()
    host.control(200)
    with pytest.raises(ValueError):
        host.control(5)
    host.request_stop()
    assert host.wait() is ExitCode.OK
    assert journal[2:10] == ["pause a", "pause b", "resume a", "resume b", "reload a", "reload b",
                             "control a 200", "control b 200"]


def test_a_failing_pause_leaves_the_host_running():
    class NoPause(Service):
        def pause(self):
            raise RuntimeError("cannot pause now")

    host = Host([NoPause()])
    host.start()
    with pytest.raises(RuntimeError):
        host.pause()
    assert host.state is HostState.RUNNING
    host.request_stop()
    host.wait()


@pytest.mark.parametrize(("policy", "code"), [("restart", ExitCode.HUNG), ("report", None)])
def test_a_hung_worker_follows_the_hang_policy(policy, code):
    release = threading.Event()

    class Hangs(Service):
        def start(self):
            self.pool = self.use(ThreadPool(2))
            self.pool.submit(release.wait)

    host = Host([Hangs()], HostConfig(hang_timeout=0.2, hang_policy=policy, shutdown_timeout=HANG_GUARD))
    host.start()
    time.sleep(0.5)
    assert not host.healthy()
    assert [b.worker for b in host.hung()] == ["pool-0"] or [b.worker for b in host.hung()] == ["pool-1"]
    if code is None:
        assert host.state is HostState.RUNNING
        host.request_stop()
        host.request_stop()  # the hung task never ends: force it
    started = time.monotonic()
    assert host.wait() is (code or ExitCode.STOP_INCOMPLETE)
    # restart does not wait out shutdown_timeout for a thread that will never finish
    assert time.monotonic() - started < HANG_GUARD
    assert host.report.unfinished and host.report.unfinished[0].running == 1
    release.set()


def test_idle_workers_are_healthy():
    class Idle(Service):
        def start(self):
            self.use(ThreadPool(4))

    host = Host([Idle()], HostConfig(hang_timeout=0.05))
    host.start()
    time.sleep(0.2)
    assert host.healthy() and host.state is HostState.RUNNING
    assert "pool: 0 done" in host.status_line()
    host.request_stop()
    assert host.wait() is ExitCode.OK


@pytest.mark.parametrize("call", ["submit", "submit_many", "map"])
def test_a_stop_while_run_is_blocked_on_a_full_pool_is_a_clean_stop(call):
    """The stop closes the intake run() is blocked on: the QueueClosed it gets ends run(), it is
    not a crash (exit 1 would make the manager restart a service the admin stopped)."""
    release = threading.Event()
    blocked = threading.Event()

    class Producer(Service):
        def start(self):
            self.pool = self.use(ThreadPool(1, queue_size=1))

        def run(self, stop):
            self.pool.submit(release.wait, HANG_GUARD)
            while True:
                blocked.set()
                if call == "submit":
                    self.pool.submit(time.sleep, 0)
                elif call == "submit_many":
                    self.pool.submit_many(time.sleep, [0] * 10, chunksize=1)
                else:
                    self.pool.map(time.sleep, [0] * 10, chunksize=1)

    host = Host([Producer()], HostConfig(shutdown_timeout=HANG_GUARD))
    t, out = run_in_thread(host)
    wait_running(host)
    assert blocked.wait(HANG_GUARD)
    time.sleep(0.05)  # run() is now blocked in the full queue
    host.request_stop("test")
    release.set()
    t.join(HANG_GUARD)
    assert out["code"] is ExitCode.OK and host.report.errors == []


def test_an_error_run_raises_while_stopping_is_collected_not_a_crash():
    class ClosesUnderItsFeet(Service):
        def run(self, stop):
            stop.wait()
            raise OSError("socket closed by stop()")

    host = Host([ClosesUnderItsFeet()])
    t, out = run_in_thread(host)
    wait_running(host)
    host.request_stop("test")
    t.join(HANG_GUARD)
    assert out["code"] is ExitCode.OK and len(host.report.errors) == 1
    assert host.state is HostState.STOPPED


def test_closing_its_own_pool_and_submitting_is_still_a_crash():
    class Buggy(Service):
        def start(self):
            self.pool = self.use(ThreadPool(1))

        def run(self, stop):
            self.pool.close()
            self.pool.submit(print)

    host = Host([Buggy()])
    assert host.run() is ExitCode.CRASH
