"""The exactly-once mode (``Intake(..., transactional=True)``, ``Store.complete``) under ``kill -9``:
a busy service whose handler writes each job's effect into the store's own database, in the
transaction that acks the job, is killed at random moments and started again, on SQLite and on a
real PostgreSQL. Handlers run again (at least once: a run whose transaction had not committed when
its process died); effects land exactly once — one row per accepted job, none from an attempt that
raised after writing, none from a run that was killed.

``INTAKE_EO_KILLS`` (default 8) and ``INTAKE_SEED`` (default random, printed) widen or replay it.
The sleeps are the random moments of the kills and the producer's pace, never timing assertions.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from servicehost.intake import open_store

from .intakes import runs, start, store_url, wait_until

KILLS = int(os.environ.get("INTAKE_EO_KILLS", "8"))
HANG = 120.0  # a hang guard per wait, never a measure
TABLE = "CREATE TABLE effects (job BIGINT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL)"


class Sqlite:
    def __init__(self, tmp: Path) -> None:
        self.url = store_url(tmp)
        open_store(self.url).close()  # the store's schema first, then the application's table
        with sqlite3.connect(tmp / "jobs.sqlite3") as conn:
            conn.execute(TABLE)

    def start(self, tmp: Path, *flags: str) -> Any:
        return start(tmp, *flags)

    def effects(self, tmp: Path) -> list[tuple[int, int]]:
        with sqlite3.connect(tmp / "jobs.sqlite3") as conn:
            return [(int(j), int(a)) for j, a in conn.execute("SELECT job, attempt FROM effects")]


class Postgres:
    def __init__(self, tmp: Path, cluster: Any) -> None:
        self.cluster = cluster
        self.schema = cluster.fresh_schema()
        # The handler's unqualified table is found through its connections' search_path: a libpq
        # option in the URL (the store passes options it does not know to libpq).
        self.url = cluster.url(schema=self.schema, options=f"-csearch_path={self.schema}")
        open_store(self.url).close()
        cluster.sql(TABLE.replace("effects", f"{self.schema}.effects"), dbname="servicehost")
        cluster.sql(f"GRANT ALL ON {self.schema}.effects TO servicehost", dbname="servicehost")

    def start(self, tmp: Path, *flags: str) -> Any:
        from .pg import start_node

        return start_node(tmp, self.url, *flags)

    def effects(self, tmp: Path) -> list[tuple[int, int]]:
        rows = self.cluster.sql(f"SELECT job, attempt FROM {self.schema}.effects", dbname="servicehost")
        return [(int(j), int(a)) for j, a in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return Sqlite(tmp_path)
    return Postgres(tmp_path, request.getfixturevalue("pg_cluster"))


def test_kill_9_at_random_moments_leaves_each_effect_exactly_once(tmp_path, db):
    seed = int(os.environ.get("INTAKE_SEED", str(random.randrange(1 << 32))))
    print(f"INTAKE_SEED={seed} INTAKE_EO_KILLS={KILLS}")
    rng = random.Random(seed)
    accepted: list[int] = []
    raising: set[int] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        prng = random.Random(rng.random())
        try:
            with open_store(db.url) as store:
                while not stop.is_set():
                    batch = [{"sleep": prng.choice([0, 0, 0, 0.001, 0.01]), "raise_first": prng.random() < 0.05}
                             for _ in range(prng.randint(1, 30))]
                    ids = store.submit_many(batch)  # accepted: the commit is durable
                    raising.update(i for i, p in zip(ids, batch) if p["raise_first"])
                    accepted.extend(ids)
                    stop.wait(prng.uniform(0, 0.02))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    flags = ("--transactional", "true", "--workers", "4", "--lease", "2", "--max-attempts", "1000")
    producer = threading.Thread(target=produce, name="producer")
    producer.start()
    try:
        for _ in range(KILLS):
            svc = db.start(tmp_path, *flags)
            time.sleep(rng.uniform(0.05, 0.6))  # the random moment of the kill
            svc.signal(signal.SIGKILL)
            svc.wait()
    finally:
        stop.set()
        producer.join(HANG)
    assert not errors, errors
    svc = db.start(tmp_path, *flags)  # the last one runs what is left
    try:
        with open_store(db.url) as store:
            wait_until(lambda: store.stats().ready + store.stats().running + store.stats().delayed == 0,
                       HANG, "every accepted job done")
    finally:
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0

    effects = db.effects(tmp_path)
    per_job = Counter(job for job, _ in effects)
    assert sorted(per_job) == sorted(accepted), "an accepted job without its effect, or an effect of no job"
    twice = [job for job, n in per_job.items() if n > 1]
    assert not twice, f"effects written twice: {twice[:10]}"
    assert all(attempt >= 2 for job, attempt in effects if job in raising), \
        "a write of an attempt that raised landed"
    started = Counter(r.job for r in runs(tmp_path) if r.kind == "S")
    rerun = sum(1 for n in started.values() if n > 1)
    print(f"{len(accepted)} jobs accepted, {len(raising)} raised once after writing, {rerun} handlers run more than "
          f"once (killed before their commit, or raised); every effect exactly once")
    assert len(accepted) > 0
