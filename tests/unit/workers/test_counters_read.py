"""Counters read while the workers record: ``sum_counters`` reads each worker's recent run-time
samples (a deque the worker appends to) from another thread. A thread switch between making the
deque's iterator and reading it made the read raise RuntimeError ("deque mutated during
iteration"): the race stage of CI caught it in an intake's ``counters()``."""

from __future__ import annotations

import sys
import threading

from servicehost.workers._supervision import WorkerStats, sum_counters

READS = 5_000


def test_counters_read_while_workers_record_samples_never_raise():
    workers = [WorkerStats(f"w{i}") for i in range(4)]
    stop = threading.Event()

    def record(stats: WorkerStats) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            stats.record(0.001 * (n % 7 + 1))

    threads = [threading.Thread(target=record, args=(w,)) for w in workers]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a switch at nearly every chance: where the read was exposed
    errors: list[BaseException] = []
    try:
        for t in threads:
            t.start()
        for _ in range(READS):
            try:
                counters = sum_counters("pool", 0, workers)
            except RuntimeError as exc:
                errors.append(exc)
                break
            assert counters.latency_p50 is None or 0.001 <= counters.latency_p50 <= 0.007
    finally:
        sys.setswitchinterval(previous)
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
