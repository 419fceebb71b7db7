"""A poison job — one that kills its worker process (``os._exit`` in the handler ends the whole
service) — is dead-lettered after ``max_attempts`` (issue 14): attempts count at claim, so each
run that killed the process counted; the claim past the limit dead-letters it without running.
The test restarts the service as its manager would. ``servicehost jobs`` then shows it in the
dead-letter table with its history, and ``requeue`` brings it back."""

from __future__ import annotations

import json
import signal

from servicehost.intake import open_store

from ..integration.proc import run_cli
from .intakes import SERVICE, by_job, runs, start, store_url, wait_until


def test_a_job_that_kills_its_process_is_dead_lettered_after_max_attempts(tmp_path):
    max_attempts = 3
    with open_store(store_url(tmp_path)) as store:
        poison = store.submit({"exit": 13}, priority=10)
        normal = store.submit_many([{"sleep": 0} for _ in range(20)])
    exits = []
    for _ in range(max_attempts + 3):  # the manager restarts it; more starts than needed are a hang guard
        # One worker claiming only for itself: the poison job is claimed alone (a job claimed beside
        # it, prefetched or running on another worker, would have an attempt counted at each death too).
        svc = start(tmp_path, "--workers", "1", "--prefetch", "0", "--lease", "0.5", "--max-attempts",
                    str(max_attempts), ready=False)
        wait_until(lambda: svc.proc.poll() is not None or any("> max_attempts" in line for line in svc.output()),
                   60, "the service dies of the poison job, or dead-letters it")
        if svc.proc.poll() is None:  # it survived: the poison job is dead (the with block below stops it)
            break
        exits.append(svc.wait())
    with svc:
        assert exits == [13] * max_attempts, exits
        poison_runs = [r for r in runs(tmp_path) if r.job == poison and r.kind == "S"]
        assert [r.attempt for r in poison_runs] == list(range(1, max_attempts + 1))
        svc.expect(rf"job {poison} claimed for attempt {max_attempts + 1} > max_attempts {max_attempts}")
        wait_until(lambda: set(normal) <= set(by_job(tmp_path, "D")), 60, "the other jobs are done")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0, "\n".join(svc.output())

    url = store_url(tmp_path)
    dead = run_cli("jobs", SERVICE, "dead", "--json", "--store", url)
    assert dead.returncode == 0, dead.stderr
    (entry,) = json.loads(dead.stdout)
    assert entry["id"] == poison and entry["payload"] == {"exit": 13} and entry["attempts"] == max_attempts + 1
    assert entry["errors"] and "max_attempts" in entry["errors"][-1]["error"]
    stats = run_cli("jobs", SERVICE, "stats", "--json", "--store", url)
    assert json.loads(stats.stdout)["dead"] == 1, stats.stdout
    requeued = run_cli("jobs", SERVICE, "requeue", str(poison), "--store", url)
    assert requeued.returncode == 0, requeued.stderr
    listed = run_cli("jobs", SERVICE, "list", "--json", "--store", url)
    (job,) = json.loads(listed.stdout)
    assert job["id"] == poison and job["state"] == "ready" and job["attempts"] == 0
    submitted = run_cli("jobs", SERVICE, "submit", '{"n": 1}', "--idempotency-key", "k1", "--store", url)
    again = run_cli("jobs", SERVICE, "submit", '{"n": 2}', "--idempotency-key", "k1", "--store", url)
    assert submitted.returncode == 0 and submitted.stdout == again.stdout, (submitted, again)
