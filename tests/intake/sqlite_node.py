"""A child process for tests/intake/test_sqlite_processes.py: a producer or a consumer on one store.

    python sqlite_node.py produce URL NAME COUNT KEYS     # submit COUNT jobs, keys cycling over KEYS
    python sqlite_node.py consume URL NAME OUT STOPFILE   # claim and ack until STOPFILE exists and nothing is left

A consumer writes one line per job it ran to OUT: ``id key start end`` (CLOCK_MONOTONIC, shared by
every process on the machine).
"""

from __future__ import annotations

import os
import sys
import time

from servicehost.intake.store import Submission, open_store


def produce(url: str, name: str, count: int, keys: int) -> None:
    with open_store(url) as store:
        batch = []
        for i in range(count):
            key = f"k{i % keys}" if keys and i % 2 == 0 else None
            batch.append(Submission({"producer": name, "seq": i}, key=key))
            if len(batch) == 25:
                store.submit_many(batch)
                batch = []
        if batch:
            store.submit_many(batch)


def consume(url: str, name: str, out: str, stopfile: str) -> None:
    with open_store(url + "?poll=0.01") as store, open(out, "w", buffering=1) as record:
        while True:
            jobs = store.claim(name, 8, 30.0, wait=0.2)
            if not jobs:
                if os.path.exists(stopfile) and store.stats().ready + store.stats().delayed == 0:
                    break
                continue
            for job in jobs:
                start = time.monotonic()
                if job.key is not None:
                    time.sleep(0.001)  # long enough that two runs of one key would overlap
                end = time.monotonic()
                assert store.ack(job).result(30.0) is True
                record.write(f"{job.id} {job.key or '-'} {start:.6f} {end:.6f}\n")


if __name__ == "__main__":
    mode, url, name = sys.argv[1:4]
    if mode == "produce":
        produce(url, name, int(sys.argv[4]), int(sys.argv[5]))
    else:
        consume(url, name, sys.argv[4], sys.argv[5])
