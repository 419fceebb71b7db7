"""PostgreSQL restarted under load (issue 15), on the real private cluster (pg.py) with a real node
process: ``pg_ctl restart -m fast`` and ``-m immediate`` (no checkpoint: crash recovery), each
``PG_INTAKE_RESTARTS`` times (default 3), while a producer submits and the node works. The
producer gets a clear error (StoreUnavailable, or StoreTimeout after its timeout) naming no
password, or blocks; every job it saw accepted is done;
the node and the producer's store carry on by themselves once the server is back (they reconnect).

The node connects over TCP with its password in PGPASSWORD (never on its command line); the
producer's URL carries the password, and no error message or log line may show it.
Waits are hang guards (>= 5x what is expected); the figures printed are measurements.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from servicehost.intake import open_store
from servicehost.intake.store import StoreError, StoreUnavailable

from .intakes import by_job, wait_until
from .pg import start_node

pytestmark = pytest.mark.slow

RESTARTS = int(os.environ.get("PG_INTAKE_RESTARTS", "3"))  # restarts under load per mode


def _rows(pg_cluster, schema: str, ids: set[int]) -> str:  # type: ignore[no-untyped-def]
    """A diagnosis for a failure message: what the database holds of those jobs."""
    try:
        rows = pg_cluster.sql(f'SELECT * FROM "{schema}".jobs WHERE id = ANY(%s) ORDER BY id LIMIT 10',
                              (sorted(ids),), dbname="servicehost")
        return f"{len(ids)} job(s), the first: {rows}"
    except Exception as exc:  # only a diagnosis
        return f"{len(ids)} job(s) ({exc!r})"


def _settled(url: str) -> bool:
    with open_store(url) as store:
        s = store.stats()
    return (s.ready, s.running, s.delayed, s.dead) == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_under_load_loses_no_accepted_job_and_work_resumes(pg_cluster, tmp_path, mode):
    schema = pg_cluster.fresh_schema()
    secret_url = pg_cluster.url(schema=schema, tcp=True, password=True)
    node_url = pg_cluster.url(schema=schema, tcp=True)  # no password: the node gets it in PGPASSWORD
    assert pg_cluster.password in secret_url and pg_cluster.password not in node_url
    accepted: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    crashed: list[BaseException] = []

    def produce() -> None:
        try:
            with open_store(secret_url) as store:
                i = 0
                while not stop.is_set():
                    try:
                        accepted.extend(store.submit_many([{"n": i + k} for k in range(16)], timeout=10.0))
                        i += 16
                    except StoreError as exc:  # the server is down: a clear error, then try again
                        failures.append(exc)
                        stop.wait(0.2)
                    stop.wait(0.01)
        except BaseException as exc:
            crashed.append(exc)

    producer = threading.Thread(target=produce)
    with start_node(tmp_path, node_url, "--workers", "4", "--lease", "2", PGPASSWORD=pg_cluster.password) as node:
        producer.start()
        try:
            wait_until(lambda: len(by_job(tmp_path, "D")) >= 100, 60, "the node works through the first jobs")
            took = []
            for _ in range(RESTARTS):  # each cut lands somewhere else in the node's and the producer's ticks
                restarted_at = time.time()
                pg_cluster.restart(mode=mode)
                took.append(time.time() - restarted_at)
                at_restart = len(accepted)
                wait_until(lambda: len(accepted) >= at_restart + 100 or crashed, 120,
                           "the producer's store submits again after the restart")
                after = set(accepted[at_restart + 50:])
                wait_until(lambda: after <= set(by_job(tmp_path, "D")), 120,
                           "the node runs jobs submitted after the restart")
        finally:
            stop.set()
            producer.join(60)
        assert not crashed, crashed
        try:
            wait_until(lambda: set(accepted) <= set(by_job(tmp_path, "D")), 120, "every accepted job is done")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the jobs not done, as the database has them: "
                                 f"{_rows(pg_cluster, schema, set(accepted) - set(by_job(tmp_path, 'D')))}") from None
        wait_until(lambda: _settled(secret_url), 60, "the node's last acks commit")
        assert node.proc.poll() is None, "the node stopped:\n" + "\n".join(node.output())
        node.signal(signal.SIGTERM)
        assert node.wait() == 0, "\n".join(node.output())
    for exc in failures:
        assert isinstance(exc, StoreError), repr(exc)
        assert pg_cluster.password not in str(exc), f"the password is in an error message: {exc}"
    output = "\n".join(node.output())
    assert pg_cluster.password not in output, "the password is in the node's log"
    done = by_job(tmp_path, "D")
    twice = sum(len(done[j]) > 1 for j in accepted)
    print(f"{RESTARTS} x restart -m {mode} took " + ", ".join(f"{t:.2f}" for t in took)
          + f"s; {len(accepted)} jobs accepted, all done, "
          f"{twice} done twice; the producer saw {len(failures)} error(s): "
          + "; ".join(sorted({f'{type(e).__name__}: {e}' for e in failures})[:3]))


def test_while_the_server_is_down_a_submit_fails_clearly_and_works_again_once_it_is_back(pg_cluster, tmp_path):
    schema = pg_cluster.fresh_schema()
    secret_url = pg_cluster.url(schema=schema, tcp=True, password=True)
    with open_store(secret_url) as store:
        (first,) = store.submit_many([{"n": 0}])
        pg_cluster.stop(mode="fast")
        try:
            t = time.monotonic()
            with pytest.raises(StoreError) as caught:
                store.submit_many([{"n": 1}], timeout=5.0)
            waited = time.monotonic() - t
            assert waited < 60  # a hang guard: the submit blocks at most about its timeout
        finally:
            pg_cluster.start()
        message = str(caught.value)
        assert pg_cluster.password not in message
        assert isinstance(caught.value, StoreUnavailable) or "timeout" in type(caught.value).__name__.lower()
        # back: the same store (same process) submits again, and a node runs both jobs
        (second,) = wait_until(lambda: _try_submit(store), 60, "the store submits again")
    with start_node(tmp_path, pg_cluster.url(schema=schema)) as node:
        wait_until(lambda: {first, second} <= set(by_job(tmp_path, "D")), 60, "a node runs both jobs")
        node.signal(signal.SIGTERM)
        assert node.wait() == 0, "\n".join(node.output())
    print(f"server down: {type(caught.value).__name__} after {waited:.2f}s: {message}")


def _try_submit(store):  # type: ignore[no-untyped-def]
    try:
        return store.submit_many([{"n": 2}], timeout=5.0)
    except StoreError:
        return None
