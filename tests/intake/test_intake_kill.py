"""``kill -9`` at random moments of a busy intake service (issue 14): every accepted job completed
at least once, none lost; a job runs again only when the process that ran it was killed before
its ack committed (each run under a claim of its own: a new attempt, in a later process), and
those duplicates are counted.

``INTAKE_KILLS`` (default 100; CI may run fewer, e.g. 20) and ``INTAKE_SEED`` (default random,
printed) widen or replay it. The sleeps are the random moments of the kills and the producer's
pace (input), never timing assertions.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from servicehost.intake import open_store

from .intakes import by_job, runs, start, store_url, wait_until

KILLS = int(os.environ.get("INTAKE_KILLS", "100"))


def test_kill_9_at_random_moments_loses_no_accepted_job(tmp_path):
    seed = int(os.environ.get("INTAKE_SEED", str(random.randrange(1 << 32))))
    print(f"INTAKE_SEED={seed} INTAKE_KILLS={KILLS}")
    rng = random.Random(seed)
    accepted: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:  # a producer in its own process's store thread, all along the campaign
        prng = random.Random(rng.random())
        try:
            with open_store(store_url(tmp_path)) as store:
                while not stop.is_set():
                    batch = [{"sleep": prng.choice([0, 0, 0, 0.001, 0.005, 0.02])} for _ in range(prng.randint(1, 40))]
                    accepted.extend(store.submit_many(batch))  # accepted: the commit is durable
                    stop.wait(prng.uniform(0, 0.03))
        except BaseException as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    kills = mid_work = 0
    try:
        for _ in range(KILLS):
            svc = start(tmp_path, "--workers", str(rng.choice([1, 2, 4, 8])), "--lease", "1",
                        "--max-attempts", "1000", ready=False)
            with svc:
                before = len(runs(tmp_path))
                time.sleep(rng.uniform(0.1, 1.5))  # the random moment: starting, claiming, running, acking
                svc.signal(signal.SIGKILL)
                assert svc.wait() == -signal.SIGKILL, "the service ended before the kill:\n" + "\n".join(svc.output())
            kills += 1
            mid_work += len(runs(tmp_path)) > before
    finally:
        stop.set()
        producer.join(60)
    assert not errors, errors
    # Some kills land while it starts, or idles between batches: those count too, but a good part
    # must land mid-work.
    assert kills == KILLS and mid_work >= KILLS // 5, (kills, mid_work)

    # One last run that is not killed finishes what is left.
    with start(tmp_path, "--workers", "8", "--lease", "1", "--max-attempts", "1000") as svc:
        def all_done() -> bool:
            with open_store(store_url(tmp_path)) as store:
                s = store.stats()
            return s.ready + s.running + s.delayed == 0
        wait_until(all_done, 300, "the last run finishes every job left")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0, "\n".join(svc.output())

    done = by_job(tmp_path, "D")
    lost = sorted(set(accepted) - set(done))
    assert not lost, f"{len(lost)} accepted job(s) never completed: {lost[:20]}"
    with open_store(store_url(tmp_path)) as store:
        assert store.dead() == [] and store.stats().ready == 0
    duplicates = {job: rs for job, rs in done.items() if len(rs) > 1}
    for job, rs in duplicates.items():
        attempts = [r.attempt for r in rs]
        assert len(set(attempts)) == len(attempts), f"job {job} completed twice under one claim: {rs}"
        pids = [r.pid for r in sorted(rs, key=lambda r: r.attempt)]
        assert all(a != b for a, b in zip(pids, pids[1:])), f"job {job} ran twice in one process: {rs}"
    runs_total = sum(len(rs) for rs in done.values())
    print(f"{len(accepted)} jobs accepted, {kills} kill -9 ({mid_work} after the service had run jobs), all completed; "
          f"{len(duplicates)} ran again because their ack had not committed ({runs_total} completed runs)")
