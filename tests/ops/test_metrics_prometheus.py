"""A real Prometheus (Debian's ``prometheus``) scrapes ``/metrics`` of a real service process
(``servicehost run tests/ops/ops_app.py --http 127.0.0.1:0``) and its HTTP API returns the series;
``prometheus_client``'s parser accepts every scrape the test makes itself. Time limits are hang
guards only. In CI (``.ci/setup-ops.sh`` installs Prometheus) a missing binary fails the run."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicehost.stopping import Deadline

from ..conftest import IN_CI
from ..integration.proc import ServiceProcess
from .test_http import APP, get

parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client (the test extra) parses every scrape")

HANG_GUARD = 60.0  # seconds: Prometheus' start and first scrapes, on a loaded machine


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        reason = "prometheus not installed (Debian's package: bash .ci/setup-ops.sh installs it)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus of the test's own: its config, data and port, scraping one target every second."""

    def __init__(self, binary: str, folder: Path, target: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: servicehost\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n", encoding="utf-8")
        self.port = free_port()
        self.log = (folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.folder = folder

    def api(self, path: str, **query: str) -> dict:  # type: ignore[type-arg]
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=HANG_GUARD) as answer:
            document = json.loads(answer.read())
        assert document["status"] == "success", document
        return document["data"]  # type: ignore[no-any-return]

    def query(self, promql: str) -> list[dict]:  # type: ignore[type-arg]
        return self.api("query", query=promql)["result"]  # type: ignore[no-any-return]

    def until(self, promql: str, what: str, accept=lambda result: bool(result)) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
        """Query until ``accept(result)``: Prometheus scrapes every second; the wait is a hang guard."""
        deadline = Deadline.after(HANG_GUARD)
        last: object = None
        while True:
            try:
                result = self.query(promql)
            except OSError as exc:  # not listening yet
                last = exc
            else:
                if accept(result):
                    return result
                last = result
            if deadline.expired:
                log = (self.folder / "prometheus.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"Prometheus never answered {what} ({promql}): last {last!r}\n{log}")
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(HANG_GUARD)
        self.log.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ServiceProcess, tuple[str, int]]]:
    with ServiceProcess("run", APP, "--http", "127.0.0.1:0", "--gate", str(tmp_path), "--log-file", "none",
                        "--state-dir", str(tmp_path / "state")) as proc:
        port = int(proc.expect(r"HTTP listener on http://127\.0\.0\.1:(\d+)/").group(1))
        proc.ready()
        yield proc, ("127.0.0.1", port)


def scrape(address: tuple[str, int]) -> dict[str, list]:  # type: ignore[type-arg]
    status, headers, body = get(address, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {f.name: f.samples for f in parser.text_string_to_metric_families(body.decode("utf-8"))}


def test_a_real_prometheus_scrapes_a_running_service_and_returns_its_series(service, tmp_path):
    binary = prometheus_binary()
    proc, address = service
    first = scrape(address)  # the service's own view, parsed by the reference parser
    assert {s.labels["component"] for s in first["servicehost_workers"]} == {"pool"}
    assert [s.labels["timer"] for s in first["servicehost_timer_runs"]] == ["ticker", "ticker"]
    prometheus = Prometheus(binary, tmp_path / "prometheus", f"{address[0]}:{address[1]}")
    try:
        up = prometheus.until('up{job="servicehost"}', "the target up",
                              lambda r: bool(r) and r[0]["value"][1] == "1")
        assert up[0]["metric"]["instance"] == f"{address[0]}:{address[1]}"
        targets = prometheus.api("targets")["activeTargets"]
        assert [t["health"] for t in targets] == ["up"] and targets[0]["lastError"] == ""
        # Counters move between scrapes: the timer submits a task every 50 ms.
        done = prometheus.until('servicehost_tasks_total{component="pool",outcome="completed"}',
                                "completed tasks", lambda r: bool(r) and float(r[0]["value"][1]) > 0)
        assert done[0]["metric"]["job"] == "servicehost"
        prometheus.until('increase(servicehost_timer_runs_total{timer="ticker",outcome="ok"}[5s])',
                         "timer runs increasing", lambda r: bool(r) and float(r[0]["value"][1]) > 0)
        state = prometheus.until("servicehost_state == 1", "the state")
        assert [r["metric"]["state"] for r in state] == ["running"]
        info = prometheus.until("servicehost_info", "the info")
        assert info[0]["metric"]["service"] == "OpsApp" and info[0]["metric"]["version"] == "1.2.3"
        # A histogram Prometheus can take a quantile of, and a utilisation from the busy time.
        prometheus.until('servicehost_task_duration_seconds_bucket{component="pool",le="+Inf"}', "the histogram")
        prometheus.until('rate(servicehost_busy_seconds_total{component="pool"}[5s]) '
                         '/ servicehost_workers{component="pool"}', "the utilisation",
                         lambda r: bool(r) and 0 <= float(r[0]["value"][1]) <= 1)
        health = prometheus.until('servicehost_health_check_status{check="gate"} == 1', "the check's status")
        assert [r["metric"]["status"] for r in health] == ["healthy"]
        # A failing task shows in its outcome.
        (tmp_path / "fail").touch()
        prometheus.until('servicehost_tasks_total{component="pool",outcome="failed"}', "a failed task",
                         lambda r: bool(r) and float(r[0]["value"][1]) >= 1)
        prometheus.until('servicehost_log_messages_total{level="error"}', "an error logged",
                         lambda r: bool(r) and float(r[0]["value"][1]) >= 1)
        # Every series the service showed at the first scrape is in Prometheus under the same name.
        names = set(prometheus.api("label/__name__/values"))
        for family, samples in first.items():
            for sample in samples:
                assert sample.name in names, sample.name
        # And every scrape made meanwhile parses (the reference parser, again).
        last = scrape(address)
        assert last["servicehost_tasks"][0].value >= 1
    finally:
        prometheus.close()
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
