"""What the metrics and the HTTP listener cost (issue 13's targets): ``bench/run.py --only metrics``.

render    ``ops.metrics.render(host)`` of a real Host running 20 components (ThreadPool(8) each),
          after enough work that every worker's latency window and histogram is full — the
          largest scrape such a service makes. Each sample is one render; target: median <= 5 ms.
rss       VmRSS of an idle service (``bench/services/idle.py``: ThreadPool(16)) run with
          ``--http 127.0.0.1:0`` and without, interleaved processes; target: the difference's
          median <= 1 MiB (the listener's selector thread, handler threads, its modules).
tasks     tiny tasks on a ThreadPool with the listener idle in the same process (started before the
          round, closed after it) and without; bulk (``submit_many``) and per-task (``submit``)
          paths, interleaved rounds, ratio on/off in tasks/s; target >= 0.97 (<= 3%). The same
          pool serves both sides, so the only difference is the listener.
"""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Callable
from typing import Any

COMPONENTS = 20
WORKERS = 8
RENDERS = 200  # renders per round


def render_host() -> tuple[Any, Callable[[], None]]:
    """A started Host with ``COMPONENTS`` ThreadPools of ``WORKERS`` workers, every worker's latency
    window full; returns it and a closer."""
    from servicehost.config import HostConfig
    from servicehost.host import Host
    from servicehost.service import Service
    from servicehost.workers import ThreadPool

    class Twenty(Service):
        name = "bench-metrics"

        def start(self) -> None:
            self.pools = [self.use(ThreadPool(WORKERS, name=f"pool-{i}")) for i in range(COMPONENTS)]

    service = Twenty()
    host = Host([service], HostConfig(shutdown_timeout=60))
    host.start()
    for pool in service.pools:
        # a chunk of 64 is sampled once: 256 chunks a worker fill its window of 256 run times
        pool.submit_many(abs, range(WORKERS * 256 * 64), chunksize=64)
        pool.join(60)

    def close() -> None:
        host.request_stop("bench over")
        host.wait()

    return host, close


def measure_render(host: Any, renders: int = RENDERS) -> tuple[list[float], list[float]]:
    """``renders`` timed renders: wall times and this thread's CPU times, in ms (the CPU time leaves
    out what other processes on a loaded machine take from it)."""
    from servicehost.ops import metrics

    wall, cpu = [], []
    for _ in range(renders):
        t0, c0 = time.perf_counter(), time.thread_time()
        metrics.render(host)
        cpu.append((time.thread_time() - c0) * 1e3)
        wall.append((time.perf_counter() - t0) * 1e3)
    return wall, cpu


def size(host: Any) -> tuple[int, int]:
    """(bytes, lines) of one scrape."""
    from servicehost.ops import metrics

    body = metrics.render(host)
    return len(body), body.count(b"\n")


class Listener:
    """The HTTP listener of ``ops/http.py`` on 127.0.0.1 (a free port), idle, in this process."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.listener: Any = None

    def __enter__(self) -> Listener:
        from servicehost.ops.http import HttpListener

        self.listener = HttpListener(self.host, "127.0.0.1:0").start()
        # One request answered: every thread it started is up and back to waiting before the timing.
        host, port = self.listener.address
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", "/livez")
            conn.getresponse().read()
        finally:
            conn.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


def idle_host() -> tuple[Any, Callable[[], None]]:
    """A started Host with nothing in it: what the listener serves while the bench's pool works."""
    from servicehost.config import HostConfig
    from servicehost.host import Host
    from servicehost.service import Service

    class Idle(Service):
        name = "bench-listener"

    host = Host([Idle()], HostConfig(shutdown_timeout=60))
    host.start()

    def close() -> None:
        host.request_stop("bench over")
        host.wait()

    return host, close


def median(xs: list[float]) -> float:
    return statistics.median(xs)
