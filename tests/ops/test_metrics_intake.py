"""A durable intake's own series in the Prometheus exposition (``ops/metrics.py``): a real
``Intake`` on a real SQLite file in a real host, scraped and parsed by ``prometheus_client``."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicehost.config import HostConfig
from servicehost.host import Host
from servicehost.intake import Intake, Job, open_store
from servicehost.service import Service
from servicehost.stopping import StopToken

from .test_metrics import FAMILIES, HANG_GUARD, scrape, value, wait_until

INTAKE_FAMILIES = {name: kind for name, kind in FAMILIES.items() if name.startswith("servicehost_intake_")}


class Jobs(Service):
    """Jobs whose payload says how they end: "ok", "flaky" (fails its first attempt), "poison"."""

    name = "Jobs"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.held = threading.Event()

    def start(self) -> None:
        self.intake = self.use(Intake(self.handle, store=self.url, workers=2, max_attempts=2,
                                      retry_base=0.01, retry_cap=0.02, name="jobs"))

    def handle(self, job: Job) -> None:
        kind = job.payload["kind"]
        if kind == "hold":
            self.held.wait(HANG_GUARD)
        elif kind == "poison" or (kind == "flaky" and job.attempt == 1):
            raise RuntimeError(f"{kind} job {job.id}, attempt {job.attempt}")

    def run(self, stop: StopToken) -> None:
        stop.wait()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Host, Jobs, str]]:
    url = f"sqlite:///{tmp_path}/jobs.sqlite3?poll=0.01"
    service = Jobs(url)
    host = Host([service], HostConfig(shutdown_timeout=HANG_GUARD))
    host.start()
    try:
        yield host, service, url
    finally:
        service.held.set()
        host.request_stop("test over")
        host.wait()


def test_an_intakes_series_exist_from_zero_and_follow_its_jobs(host):
    host, service, url = host
    types, s = scrape(host)
    assert len(INTAKE_FAMILIES) == 6
    for family, kind in INTAKE_FAMILIES.items():
        assert types.get(family) == kind, (family, types.get(family))
    key = {"component": "jobs"}
    assert value(s, "servicehost_intake_ready_jobs", **key) == 0
    assert value(s, "servicehost_intake_dead_jobs", **key) == 0
    assert value(s, "servicehost_intake_retries_total", **key) == 0
    assert math.isnan(value(s, "servicehost_intake_wait_seconds", quantile="0.5", **key))
    # The pool's families carry it too (workers, tasks), as for any component.
    assert value(s, "servicehost_workers", **key) == 2

    with open_store(url) as store:
        store.submit_many([{"kind": "ok"}] * 40 + [{"kind": "flaky"}] * 3 + [{"kind": "poison"}])
    wait_until("every job settled", lambda: service.intake.counters().completed == 43 and
               service.intake.counters().dead_letters == 1)
    _, s = scrape(host)
    assert value(s, "servicehost_intake_dead_jobs", **key) == 1
    assert value(s, "servicehost_intake_retries_total", **key) == 3 + 1  # each flaky once, the poison once
    assert value(s, "servicehost_intake_rescues_total", **key) == 0
    assert value(s, "servicehost_intake_commit_operations", **key) >= 1
    assert value(s, "servicehost_intake_wait_seconds", quantile="0.99", **key) >= \
        value(s, "servicehost_intake_wait_seconds", quantile="0.5", **key) >= 0
    assert value(s, "servicehost_tasks_total", outcome="completed", **key) == 43

    # Both workers held: what is submitted now waits in the store, every node's backlog.
    with open_store(url) as store:
        store.submit_many([{"kind": "hold"}] * 2)
        wait_until("both workers busy", lambda: service.intake.counters().in_flight == 2)
        store.submit_many([{"kind": "ok"}] * 500)  # more than any prefetch takes
        wait_until("the backlog counted", lambda: value(scrape(host)[1], "servicehost_intake_ready_jobs", **key) >= 1)
    service.held.set()
    wait_until("the backlog done", lambda: service.intake.counters().completed == 43 + 2 + 500)
