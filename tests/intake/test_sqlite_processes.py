"""Several processes on one SQLite file (real processes): correct, not fast.

Three producers and three consumers share one store: every job runs exactly once (nobody
crashes here), jobs sharing a key never overlap and start in submit order, across processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servicehost.intake.store import Stats, open_store

HERE = Path(__file__).resolve().parent
HANG = 120.0  # a hang guard, never a measure
PER_PRODUCER = 400


@pytest.mark.slow
def test_three_producers_and_three_consumers_on_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.sqlite3"
    open_store(url).close()  # the schema, made once
    stop = tmp_path / "stop"
    node = [sys.executable, str(HERE / "sqlite_node.py")]
    consumers = [subprocess.Popen([*node, "consume", url, f"c{i}", str(tmp_path / f"c{i}.out"), str(stop)])
                 for i in range(3)]
    producers = [subprocess.Popen([*node, "produce", url, f"p{i}", str(PER_PRODUCER), "5"]) for i in range(3)]
    try:
        assert [p.wait(HANG) for p in producers] == [0, 0, 0]
        stop.touch()
        assert [c.wait(HANG) for c in consumers] == [0, 0, 0]
    finally:
        for proc in producers + consumers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    runs = [line.split() for i in range(3) for line in (tmp_path / f"c{i}.out").read_text().splitlines()]
    ids = [int(r[0]) for r in runs]
    assert len(ids) == 3 * PER_PRODUCER and len(set(ids)) == len(ids)  # each exactly once
    by_key: dict[str, list[tuple[int, float, float]]] = {}
    for job_id, key, start, end in runs:
        if key != "-":
            by_key.setdefault(key, []).append((int(job_id), float(start), float(end)))
    assert len(by_key) == 5
    for key, jobs in by_key.items():
        by_start = sorted(jobs, key=lambda j: j[1])
        assert [j[0] for j in by_start] == sorted(j[0] for j in jobs), f"{key}: not in submit order"
        for before, after in zip(by_start, by_start[1:]):
            assert before[2] <= after[1], f"{key}: jobs {before[0]} and {after[0]} ran at the same time"
    with open_store(url) as store:
        assert store.stats() == Stats(0, 0, 0, 0, None)
