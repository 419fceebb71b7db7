"""The Prometheus exposition (``ops/metrics.py``) of real hosts running real pools, read in this
process: every scrape is parsed by ``prometheus_client``'s parser (the reference for the text
format 0.0.4), every documented series exists from 0 before any work, counters move with the
work, hostile names survive the escaping, and counters never go back.
(``test_metrics_prometheus.py`` has a real Prometheus scrape a real process.)"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from servicehost import logs
from servicehost.components import TIME_BUCKETS
from servicehost.config import HostConfig
from servicehost.errors import QueueClosed, QueueFull
from servicehost.host import Host
from servicehost.lifecycle import HostState
from servicehost.ops import metrics
from servicehost.service import Service
from servicehost.stopping import Deadline, StopToken
from servicehost.workers import ClosableQueue, Dispatcher, PeriodicTimer, Pipeline, ProcessPool, Stage, ThreadPool
from servicehost.workers.process_pool import WorkerDied

parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client (the test extra) parses every scrape")

HANG_GUARD = 30.0  # seconds: only to keep a broken test from hanging the run
HOSTILE = 'po"ol\\ \n</script><img src=x onerror="alert(1)">'

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(host: Host) -> tuple[dict[str, str], Samples]:
    """Render, parse with prometheus_client, and return each family's type and every sample."""
    text = metrics.render(host).decode("utf-8")
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in parser.text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def wait_until(what: str, cond: Callable[[], bool]) -> None:
    deadline = Deadline.after(HANG_GUARD)
    while not cond():
        if deadline.expired:
            raise AssertionError(f"not reached within {HANG_GUARD}s: {what}")
        time.sleep(0.01)


def square(x: int) -> int:  # a process pool's task: importable by name
    return x * x


def log_errors(count: int) -> int:  # a process pool's task that logs, in the child
    for i in range(count):
        logging.getLogger("servicehost.test_metrics.child").error("error %d in the child", i)
    return count


def sleep_then(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class Everything(Service):
    """One of each worker model; nothing runs until the test says so."""

    name = "Everything"
    version = "9.9"

    def __init__(self, *, processes: bool = False, pool_name: str = "pool") -> None:
        super().__init__()
        self.processes, self.pool_name = processes, pool_name
        self.tick_gate = threading.Event()

    def start(self) -> None:
        self.pool = self.use(ThreadPool(3, name=self.pool_name, queue_size=4))
        self.pipe = self.use(Pipeline([Stage("parse", lambda x: x, workers=2), Stage("store", lambda x: None)],
                                      name="pipe"))
        self.keyed = self.use(Dispatcher(2, name="keyed"))
        self.timer = self.use(PeriodicTimer(0.05, self.tick, name="tick"))
        if self.processes:
            self.procs = self.use(ProcessPool(1, name="procs"))
            self.procs.wait_ready(HANG_GUARD)

    def tick(self) -> None:
        if not self.tick_gate.is_set():
            raise RuntimeError("not yet")

    def run(self, stop: StopToken) -> None:
        stop.wait()


@pytest.fixture
def running() -> Iterator[Callable[..., Host]]:
    hosts: list[Host] = []

    def start(*services: Service) -> Host:
        host = Host(list(services), HostConfig(shutdown_timeout=HANG_GUARD))
        host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.request_stop("test over")
        host.wait()


FAMILIES = {
    "servicehost_info": "gauge", "servicehost_state": "gauge", "servicehost_start_time_seconds": "gauge",
    "servicehost_workers": "gauge", "servicehost_workers_busy": "gauge", "servicehost_queue_depth": "gauge",
    "servicehost_queue_capacity": "gauge", "servicehost_tasks_submitted": "counter", "servicehost_tasks": "counter",
    "servicehost_tasks_rejected": "counter", "servicehost_busy_seconds": "counter",
    "servicehost_task_duration_seconds": "histogram", "servicehost_queue_wait_seconds": "histogram",
    "servicehost_worker_restarts": "counter", "servicehost_timer_runs": "counter",
    "servicehost_timer_overruns": "counter", "servicehost_timer_last_success_timestamp_seconds": "gauge",
    "servicehost_timer_duration_seconds": "histogram", "servicehost_log_messages": "counter",
    "servicehost_health_check_status": "gauge",
    # a durable intake's (tests/ops/test_metrics_intake.py): the families are there without one too
    "servicehost_intake_ready_jobs": "gauge", "servicehost_intake_dead_jobs": "gauge",
    "servicehost_intake_retries": "counter", "servicehost_intake_rescues": "counter",
    "servicehost_intake_commit_operations": "gauge", "servicehost_intake_wait_seconds": "gauge",
}


def test_every_series_exists_from_zero_at_start_and_the_format_is_the_reference_parsers(running):
    service = Everything()
    host = running(service)
    types, samples = scrape(host)
    assert types == FAMILIES  # (the parser names a counter's family without _total)
    assert value(samples, "servicehost_info", service="Everything", version="9.9", python=_python(),
                 servicehost=_servicehost()) == 1
    assert value(samples, "servicehost_state", state="running") == 1
    assert sum(v for (n, _), v in samples.items() if n == "servicehost_state") == 1
    assert abs(value(samples, "servicehost_start_time_seconds") - time.time()) < 3600
    for component in ({"component": "pool"}, {"component": "keyed"},
                      {"component": "pipe", "stage": "parse"}, {"component": "pipe", "stage": "store"}):
        for name in ("servicehost_workers_busy", "servicehost_queue_depth", "servicehost_tasks_submitted_total",
                     "servicehost_tasks_rejected_total", "servicehost_task_duration_seconds_count"):
            assert value(samples, name, **component) == 0, (name, component)
        for outcome in ("completed", "failed"):
            assert value(samples, "servicehost_tasks_total", outcome=outcome, **component) == 0
        assert value(samples, "servicehost_task_duration_seconds_bucket", le="900.0", **component) == 0
    assert value(samples, "servicehost_workers", component="pool") == 3
    assert value(samples, "servicehost_queue_capacity", component="pool") == 4
    assert value(samples, "servicehost_workers", component="pipe", stage="parse") == 2
    assert value(samples, "servicehost_queue_wait_seconds_count", component="pool") == 0
    assert value(samples, "servicehost_worker_restarts_total", component="pool") == 0
    assert value(samples, "servicehost_timer_last_success_timestamp_seconds", timer="tick") == 0
    assert value(samples, "servicehost_timer_runs_total", timer="tick", outcome="ok") == 0
    for level in ("debug", "info", "warning", "error", "critical"):
        assert ("servicehost_log_messages_total", frozenset({("level", level)})) in samples
    # The default buckets: 1 ms to 15 min, each on the grid, then +Inf.
    les = sorted(float(dict(labels)["le"]) for (n, labels), _ in samples.items()
                 if n == "servicehost_task_duration_seconds_bucket" and ("component", "pool") in labels)
    assert les == [*metrics.DEFAULT_BUCKETS, float("inf")] and les[-2] == 900.0


def test_counters_follow_the_work(running):
    service = Everything()
    host = running(service)
    release = threading.Event()
    for _ in range(3):  # every worker busy
        service.pool.submit(release.wait, HANG_GUARD)
    for _ in range(4):  # the queue full
        service.pool.submit(release.wait, HANG_GUARD)
    with pytest.raises(QueueFull):
        service.pool.submit(print, timeout=0.01)
    wait_until("3 busy", lambda: service.pool.counters().in_flight == 3)
    _, busy = scrape(host)
    assert value(busy, "servicehost_workers_busy", component="pool") == 3
    assert value(busy, "servicehost_queue_depth", component="pool") == 4
    assert value(busy, "servicehost_tasks_rejected_total", component="pool") == 1
    release.set()
    service.pool.submit_many(abs, range(1000))
    for _ in range(200):
        service.pool.submit(sleep_then, 0.0)
    service.pool.submit(lambda: 1 / 0)
    for i in range(500):
        service.pipe.put(i)
    for key in range(300):
        service.keyed.submit(key % 7, abs, key)
    assert service.pool.join(HANG_GUARD)
    wait_until("the pipeline done", lambda: service.pipe.counters().completed == 500)
    wait_until("the dispatcher done", lambda: service.keyed.counters().completed == 300)
    _, s = scrape(host)
    assert value(s, "servicehost_tasks_total", component="pool", outcome="completed") == 7 + 1000 + 200
    assert value(s, "servicehost_tasks_total", component="pool", outcome="failed") == 1
    assert value(s, "servicehost_tasks_submitted_total", component="pool") == 7 + 1000 + 200 + 1
    assert value(s, "servicehost_queue_depth", component="pool") == 0  # join()'s markers are no tasks
    assert value(s, "servicehost_tasks_total", component="pipe", stage="parse", outcome="completed") == 500
    assert value(s, "servicehost_tasks_total", component="pipe", stage="store", outcome="completed") == 500
    assert value(s, "servicehost_tasks_total", component="keyed", outcome="completed") == 300
    service.keyed.close()
    with pytest.raises(QueueClosed):
        service.keyed.submit("k", abs, 1)
    assert value(scrape(host)[1], "servicehost_tasks_rejected_total", component="keyed") == 1
    # Sampled: one task in 64 (a chunk counts its tasks), one hand-off in 64 timed in the queue.
    assert value(s, "servicehost_task_duration_seconds_count", component="pool") >= 3
    assert value(s, "servicehost_queue_wait_seconds_count", component="pool") >= 1
    assert value(s, "servicehost_task_duration_seconds_count", component="pipe", stage="parse") >= 5
    assert value(s, "servicehost_queue_wait_seconds_count", component="pipe", stage="parse") >= 3
    assert value(s, "servicehost_task_duration_seconds_count", component="keyed") >= 3
    # The busy time holds the three tasks that waited for the release (each longer than 0).
    assert value(s, "servicehost_busy_seconds_total", component="pool") > 0
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                     if k[0] == "servicehost_task_duration_seconds_bucket" and ("component", "pool") in k[1])
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == value(s, "servicehost_task_duration_seconds_count", component="pool")


def test_queue_waits_are_timed_with_many_consumers_and_never_stick():
    """Consumers overtaking each other between taking a timed hand-off and seeing it (a consumer
    preempted there while others take the next timed one): that one is not timed — a sample, not
    a count — and its stale stamp is dropped at the next timing, so later waits are still timed."""
    queue: ClosableQueue[object] = ClosableQueue(10_000, track=True)  # as the pools' queues
    got = []

    def consume() -> None:
        try:
            while True:
                item = queue.get()
                queue.settle(item)
                got.append(item)
        except QueueClosed:
            pass

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    for t in consumers:
        t.start()
    for burst in range(20):
        for _ in range(64 * 50):
            queue.put(object())
        wait_until(f"burst {burst} taken", lambda: len(got) == (burst + 1) * 64 * 50)
        assert queue.waits().samples >= 5 * (burst + 1)  # 50 timed a burst, less what the races dropped
    queue.close()
    for t in consumers:
        t.join(HANG_GUARD)
    with pytest.raises(QueueClosed):
        queue.put(1)
    assert queue.rejected == 1


def test_timers_runs_overruns_and_last_success(running):
    service = Everything()
    host = running(service)
    wait_until("a failed run", lambda: service.timer.counters().failed >= 1)
    _, before = scrape(host)
    assert value(before, "servicehost_timer_runs_total", timer="tick", outcome="failed") >= 1
    assert value(before, "servicehost_timer_last_success_timestamp_seconds", timer="tick") == 0
    service.tick_gate.set()
    wait_until("a run that returned", lambda: service.timer.counters().completed >= 1)
    _, after = scrape(host)
    assert value(after, "servicehost_timer_runs_total", timer="tick", outcome="ok") >= 1
    assert abs(value(after, "servicehost_timer_last_success_timestamp_seconds", timer="tick") - time.time()) < 60
    assert value(after, "servicehost_timer_overruns_total", timer="tick") >= 0


def test_hostile_names_round_trip_through_the_escaping(running):
    service = Everything(pool_name=HOSTILE)
    host = running(service)
    service.pool.submit(abs, 1)
    assert service.pool.join(HANG_GUARD)
    text = metrics.render(host).decode()
    assert "\n</script>" not in text  # the newline in the name is escaped: no line starts with the rest of it
    _, s = scrape(host)
    assert value(s, "servicehost_tasks_total", component=HOSTILE, outcome="completed") == 1


def test_two_components_of_one_name_are_two_series(running):
    class Twice(Service):
        def start(self) -> None:
            self.use(ThreadPool(1, name="same"))
            self.use(ThreadPool(1, name="same"))

    _, s = scrape(running(Twice()))
    assert value(s, "servicehost_workers", component="same") == 1
    assert value(s, "servicehost_workers", component="same#2") == 1


def test_health_checks_show_their_last_result_by_status(running):
    from servicehost import Health

    class Checked(Service):
        def __init__(self) -> None:
            super().__init__()
            self.verdict = Health.DEGRADED

        def start(self) -> None:
            self.health_check(HOSTILE.replace("\n", " "), lambda: self.verdict, timeout=5.0, cache=0.0)

    service = Checked()
    host = running(service)
    _, s = scrape(host)
    assert [value(s, "servicehost_health_check_status", check=HOSTILE.replace("\n", " "), status=x)
            for x in ("healthy", "degraded", "unhealthy")] == [0, 1, 0]
    service.verdict = Health.UNHEALTHY
    _, s = scrape(host)
    assert value(s, "servicehost_health_check_status", check=HOSTILE.replace("\n", " "), status="unhealthy") == 1


def test_buckets_are_chosen_per_component_on_the_grid(running):
    class Chosen(Service):
        def start(self) -> None:
            self.slow = self.use(metrics.buckets(ThreadPool(1, name="slow"), (60, 1, 900, 10)))

    _, s = scrape(running(Chosen()))
    les = sorted(float(dict(k[1])["le"]) for k in s if k[0] == "servicehost_task_duration_seconds_bucket")
    assert les == [1.0, 10.0, 60.0, 900.0, float("inf")]
    with pytest.raises(ValueError, match="among .*0.0001.*900"):
        metrics.buckets(ThreadPool(1, name="off"), (0.3,))
    assert 900.0 == TIME_BUCKETS[-1]


def test_log_messages_are_counted_by_level():
    logger = logging.getLogger("servicehost.test_metrics")
    logs.configure(level="INFO", console=False)
    try:
        before = dict(logs.MESSAGES)
        logger.warning("one")
        logger.warning("two")
        logger.error("three")
        logger.info("four")
        logger.debug("not logged: below the level")
        logger.log(35, "between warning and error: counted as a warning")
    finally:
        logs.release()
    assert logs.MESSAGES[logging.WARNING] - before[logging.WARNING] == 3
    assert logs.MESSAGES[logging.ERROR] - before[logging.ERROR] == 1
    assert logs.MESSAGES[logging.INFO] - before[logging.INFO] == 1
    assert logs.MESSAGES[logging.DEBUG] == before[logging.DEBUG]


def test_busy_seconds_never_go_back_while_tasks_start_and_end(running):
    service = Everything()
    host = running(service)
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            try:
                service.pool.submit(sleep_then, 0.0005, timeout=0.1)
            except QueueFull:
                pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        last = 0.0
        for _ in range(200):
            _, s = scrape(host)
            now = value(s, "servicehost_busy_seconds_total", component="pool")
            assert now >= last
            last = now
    finally:
        stop.set()
        feeder.join(HANG_GUARD)
    assert last > 0


def test_a_process_pool_reports_through_its_pipe_and_counts_a_replaced_child(running):
    service = Everything(processes=True)
    host = running(service)
    assert service.procs.map(square, range(100)) == [x * x for x in range(100)]
    _, s = scrape(host)
    assert value(s, "servicehost_tasks_total", component="procs", outcome="completed") == 100
    assert value(s, "servicehost_worker_restarts_total", component="procs") == 0
    assert value(s, "servicehost_workers", component="procs") == 1
    pid = service.procs.pids()[0]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # The next task finds the child dead (or sees it die under it: WorkerDied, counted failed);
    # either way the child is replaced once, and the task after that runs.
    try:
        assert service.procs.submit_result(square, 3).result(HANG_GUARD) == 9
    except WorkerDied:
        assert service.procs.submit_result(square, 3).result(HANG_GUARD) == 9
    _, after = scrape(host)
    assert value(after, "servicehost_worker_restarts_total", component="procs") == 1
    assert value(after, "servicehost_tasks_total", component="procs", outcome="completed") == 101


def test_a_process_pool_childs_log_records_are_counted_in_the_parent_through_its_pipe():
    pool = ProcessPool(1, name="logging")
    try:
        pool.wait_ready(HANG_GUARD)
        before = dict(logs.MESSAGES)
        assert pool.submit_result(log_errors, 3).result(HANG_GUARD) == 3
        assert pool.submit_result(square, 2).result(HANG_GUARD) == 4  # nothing logged: nothing sent
        assert pool.submit_result(log_errors, 1).result(HANG_GUARD) == 1
        assert logs.MESSAGES[logging.ERROR] - before[logging.ERROR] == 4
    finally:
        pool.shutdown(HANG_GUARD)


def test_state_follows_the_host(running):
    service = Everything()
    host = running(service)
    host.drain()
    try:
        _, s = scrape(host)
        assert value(s, "servicehost_state", state="draining") == 1
        assert value(s, "servicehost_state", state="running") == 0
    finally:
        host.resume()
    assert host.state is HostState.RUNNING


def test_a_host_not_started_yet_is_scraped_too():
    """The listener is up before the start (probes see "starting"): a scrape then has the host's
    series and no component yet."""
    host = Host([Everything()], HostConfig())
    types, s = scrape(host)
    assert value(s, "servicehost_state", state="created") == 1
    assert value(s, "servicehost_start_time_seconds") == 0
    assert not [k for k in s if k[0] == "servicehost_workers"]
    assert set(types) == set(FAMILIES)


def test_the_content_type_is_the_text_format_0_0_4():
    assert metrics.CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def _python() -> str:
    import sys

    return "{}.{}.{}".format(*sys.version_info[:3])


def _servicehost() -> str:
    from servicehost.ops.status import servicehost_version

    return servicehost_version()
