#!/usr/bin/env python3
"""The durable intake on PostgreSQL: two node processes on one database, against a per-job-commit queue.

    python bench/intake_pg.py              # about a minute on 2 cores
    python bench/intake_pg.py --quick      # fewer jobs
    python bench/run.py --only pg_intake   # the same, as a row of the whole bench

One run on a private PostgreSQL cluster started for it (tests/intake/pg.py: initdb in a fresh
folder under ``--dir``, default /var/tmp, a real disk; the server's defaults: fsync on,
synchronous_commit on, plus only :data:`TUNING`, the settings the README tells users to apply), the
server and both nodes on the same machine:

* **ours**: two processes, each ``Intake(handler, store=open_store("postgresql://..."))`` with the
  shipped defaults (16 workers, the default prefetch, lease and LISTEN/NOTIFY) on the same database
  and schema while 2 producer threads in each ``submit_many`` batches of 128 (each returns once its
  commit is durable): submit, claim, handler and ack all running at once on both nodes, each node
  claiming whatever is ready (its own jobs or the other's). At least once. Time: the first submit →
  the handlers (of both) have seen every job. Per node: the jobs its handlers saw / that time.
* **per-job commit**: the naive queue, in two processes at once as well: a producer thread
  committing one ``INSERT`` per job and a consumer thread taking one job per transaction
  (``SELECT ... ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1``, then ``DELETE``, ``COMMIT``).

Both print the database's commits/s (``pg_stat_database.xact_commit`` of the database over the
run, read after the nodes disconnected: every backend has flushed its counts then; it includes the
idle ticks and the setup) and ours the store's own commits (``StoreMetrics.commits``).

Target (issue 15): ours >= 10k jobs/s in total.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SRC = ROOT / "src"

NODES, PRODUCERS, BATCH = 2, 2, 128
TARGET_RATE = 10_000.0
# Server settings the README tells users to apply for the intake, and only those (fsync and
# synchronous_commit stay on: the defaults).
TUNING: dict[str, str] = {"autovacuum_naptime": "10s"}
HANG = 600.0  # hang guard for any one step (the whole run takes about a minute)


# -- the children: one node each ----------------------------------------------------------------
def _lines() -> Any:
    for line in sys.stdin:
        yield line.strip()


def _say(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def child_ours(n: int, url: str) -> None:
    from servicehost.intake import Intake, open_store
    from servicehost.stopping import Deadline

    store = open_store(url)
    lock = threading.Lock()
    seen = [0, 0.0]  # handled, time.time() of the last

    def handler(job: Any) -> None:
        with lock:
            seen[0] += 1
            seen[1] = time.time()

    intake = Intake(handler, store=store)  # the shipped defaults
    intake.start()
    commands = _lines()
    _say({"ready": True})
    if next(commands) != "go":
        return
    per = n // PRODUCERS

    def produce() -> None:
        payloads = [{"n": i} for i in range(BATCH)]
        left = per
        while left > 0:
            store.submit_many(payloads[: min(BATCH, left)])
            left -= BATCH

    t0 = time.time()
    threads = [threading.Thread(target=produce) for _ in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _say({"submitted": per * PRODUCERS, "seconds": time.time() - t0})
    for command in commands:
        if command == "count":
            with lock:
                _say({"seen": seen[0]})
        elif command == "stop":
            break
    m = store.metrics()
    intake.close()
    intake.drain(Deadline.after(30.0))
    store.close()
    with lock:
        _say({"t0": t0, "seen": seen[0], "last": seen[1], "commits": m.commits,
              "batch": m.committed_ops / max(1, m.commits), "cpu": _cpu_self()})


def child_naive(n: int, conninfo: str) -> None:
    import psycopg

    wake = threading.Event()  # never set: an empty queue is polled, as such queues do (with a deadline)
    ends: list[float] = []

    def consume() -> None:
        with psycopg.connect(conninfo) as conn:
            taken = 0
            while taken < n:
                with conn.transaction():
                    row = conn.execute("SELECT id, payload FROM naive.jobs ORDER BY id "
                                       "FOR UPDATE SKIP LOCKED LIMIT 1").fetchone()
                    if row is not None:
                        conn.execute("DELETE FROM naive.jobs WHERE id = %s", (row[0],))
                        taken += 1
                if row is None:
                    wake.wait(0.0005)
        ends.append(time.time())

    commands = _lines()
    with psycopg.connect(conninfo, autocommit=True) as producer:
        _say({"ready": True})
        if next(commands) != "go":
            return
        t0 = time.time()
        consumer = threading.Thread(target=consume)
        consumer.start()
        for i in range(n):
            producer.execute("INSERT INTO naive.jobs (payload) VALUES (%s)", (json.dumps({"n": i}),))
        consumer.join(HANG)
    _say({"t0": t0, "seen": n, "last": ends[0] if ends else float("nan"), "cpu": _cpu_self()})


def _cpu_self() -> float:
    t = os.times()
    return t.user + t.system


def server_cpu(data: Path) -> float:
    """CPU seconds of the server so far: the postmaster, its children alive and those it reaped
    (Linux /proc; 0.0 elsewhere)."""
    try:
        pm = int((data / "postmaster.pid").read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")

        def fields(pid: int) -> list[str]:
            text = Path(f"/proc/{pid}/stat").read_text()
            return text[text.rindex(")") + 2:].split()  # after "pid (comm) "

        own = fields(pm)
        total = sum(int(x) for x in own[11:15])  # utime stime cutime cstime
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    f = fields(int(entry))
                except (OSError, ValueError):
                    continue
                if int(f[1]) == pm:
                    total += int(f[11]) + int(f[12])
        return total / tick
    except (OSError, ValueError, IndexError):
        return 0.0


# -- the parent -----------------------------------------------------------------------------------
class Child:
    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.err: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr or []), daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.out.put(json.loads(line))
            except ValueError:
                pass
        self.out.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def get(self, timeout: float = HANG) -> dict[str, Any]:
        try:
            item = self.out.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"a child said nothing within {timeout:g}s") from None
        if item is None:
            self.proc.wait(30)
            raise RuntimeError(f"a child ended ({self.proc.returncode}):\n{''.join(self.err)[-3000:]}")
        result: dict[str, Any] = item
        return result

    def finish(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _commits(cluster: Any) -> int:
    return int(cluster.sql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'servicehost'")[0][0])


def _run(cluster: Any, children: list[Child], total: int, counting: bool) -> tuple[list[dict[str, Any]], int]:
    """ready → go → (ours: poll the handlers' counts until they saw ``total``) → the results."""
    try:
        for c in children:
            c.get()  # ready
        commits_before = _commits(cluster)
        cpu_before = server_cpu(cluster.data)
        for c in children:
            c.send("go")
        if counting:
            for c in children:
                c.get()  # submitted
            end = time.monotonic() + HANG
            wake = threading.Event()
            while True:
                for c in children:
                    c.send("count")
                if sum(c.get()["seen"] for c in children) >= total:
                    break
                if time.monotonic() > end:
                    raise RuntimeError(f"not every job seen within the {HANG:g}s hang guard")
                wake.wait(0.02)
            for c in children:
                c.send("stop")
        results = [c.get() for c in children]
    finally:
        for c in children:
            c.finish()
    for r in results:
        r["server_cpu"] = server_cpu(cluster.data) - cpu_before
    return results, _commits(cluster) - commits_before


def _summary(results: list[dict[str, Any]], commits: int) -> dict[str, Any]:
    t0 = min(r["t0"] for r in results)
    last = max(r["last"] for r in results)
    seconds = last - t0
    seen = sum(r["seen"] for r in results)
    per_node = [r["seen"] / max(1e-9, r["last"] - t0) for r in results]
    return {"jobs": seen, "seconds": seconds, "rate": seen / seconds, "per_node": per_node,
            "per_node_jobs": [r["seen"] for r in results], "db_commits": commits,
            "db_commits_per_s": commits / seconds,
            "store_commits": [r.get("commits") for r in results], "batch": [r.get("batch") for r in results],
            "node_cpu": [r["cpu"] for r in results], "server_cpu": results[0]["server_cpu"]}


TITLE = ("durable intake on PostgreSQL, trivial jobs end to end: two node processes on one database "
         "(shipped defaults, fsync on) vs a per-job-commit SKIP LOCKED queue")


def measure(quick: bool, folder: Path | None, say: Any = print, statements: bool = False) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.intake.pg import Cluster

    n_ours = 20_000 if quick else 100_000  # per node
    n_naive = 1_000 if quick else 3_000  # per process
    base = Path(tempfile.mkdtemp(prefix="shb-intake-pg-", dir=str(folder) if folder else "/var/tmp"))
    base.chmod(0o755)  # the server runs as postgres under root: it must reach its folder inside
    try:
        settings = {**TUNING, **({"shared_preload_libraries": "pg_stat_statements"} if statements else {})}
        with Cluster.create(settings=settings, parent=base) as cluster:
            if statements:
                cluster.sql("CREATE EXTENSION pg_stat_statements", dbname="servicehost")
            say(f"  {cluster.sql('SELECT version()')[0][0].split(',')[0]}; fsync "
                f"{cluster.sql('SHOW fsync')[0][0]}, synchronous_commit {cluster.sql('SHOW synchronous_commit')[0][0]}"
                f"{'; ' + ', '.join(f'{k}={v}' for k, v in TUNING.items()) if TUNING else ''}")
            cluster.sql("CREATE SCHEMA naive", dbname="servicehost", user="servicehost")
            cluster.sql("CREATE TABLE naive.jobs (id bigserial PRIMARY KEY, payload jsonb NOT NULL)",
                        dbname="servicehost", user="servicehost")
            url = cluster.url(schema="bench")
            from servicehost.intake import open_store

            open_store(url).close()  # the schema created before the timed run (its creation is not measured)
            ours, commits = _run(cluster, [Child("ours", str(n_ours), url) for _ in range(NODES)],
                                 NODES * n_ours, counting=True)
            o = _summary(ours, commits)
            say(f"  ours: {o['rate']:,.0f} jobs/s in total ({o['jobs']} jobs in {o['seconds']:.2f} s); per node "
                + ", ".join(f"{r:,.0f} jobs/s ({j} jobs)" for r, j in zip(o["per_node"], o["per_node_jobs"]))
                + f"; database {o['db_commits_per_s']:,.0f} commits/s; store commits "
                + ", ".join(f"{c} of {b:.0f} ops" for c, b in zip(o["store_commits"], o["batch"])))
            if statements:
                _top_statements(cluster, say)
            say(f"  ours, CPU seconds: nodes {' + '.join(f'{c:.1f}' for c in o['node_cpu'])}, server "
                f"{o['server_cpu']:.1f}, in {o['seconds']:.1f} s on {os.cpu_count()} cores")
            conninfo = cluster.conninfo(user="servicehost", dbname="servicehost")
            naive, commits = _run(cluster, [Child("naive", str(n_naive), conninfo) for _ in range(NODES)],
                                  NODES * n_naive, counting=False)
            b = _summary(naive, commits)
            say(f"  per-job commit: {b['rate']:,.0f} jobs/s in total ({b['jobs']} jobs in {b['seconds']:.2f} s); "
                f"per process " + ", ".join(f"{r:,.0f}" for r in b["per_node"])
                + f"; database {b['db_commits_per_s']:,.0f} commits/s; CPU seconds: processes "
                + " + ".join(f"{c:.1f}" for c in b["node_cpu"]) + f", server {b['server_cpu']:.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"ours": o, "naive": b, "sizes": {"ours": NODES * n_ours, "naive": NODES * n_naive},
            "tuning": TUNING, "notes": []}


def _top_statements(cluster: Any, say: Any) -> None:
    """The server's time per statement over the run (``--statements``: pg_stat_statements loaded)."""
    rows = cluster.sql("SELECT calls, total_exec_time, rows, shared_blks_hit + shared_blks_read, "
                       "regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "
                       "ORDER BY total_exec_time DESC LIMIT 12", dbname="servicehost")
    say(f"  {'calls':>7s} {'total ms':>9s} {'ms/call':>8s} {'rows':>8s} {'blocks':>9s}  statement")
    for calls, total, nrows, blocks, query in rows:
        say(f"  {calls:7d} {total:9.0f} {total / max(1, calls):8.3f} {nrows:8d} {blocks:9d}  {query[:150]}")


def report(result: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, float, float, bool]]]:
    o, b = result["ours"], result["naive"]
    lines = [f"{'contender':22s} {'jobs/s':>10s} {'per node':>22s} {'db commits/s':>13s}",
             f"{'ours (2 nodes)':22s} {o['rate']:10,.0f} {' + '.join(f'{r:,.0f}' for r in o['per_node']):>22s} "
             f"{o['db_commits_per_s']:13,.0f}",
             f"{'per-job commit (2)':22s} {b['rate']:10,.0f} {' + '.join(f'{r:,.0f}' for r in b['per_node']):>22s} "
             f"{b['db_commits_per_s']:13,.0f}",
             f"ours / per-job commit: {o['rate'] / b['rate']:.1f}x"]
    verdicts = [("ours, two nodes, trivial jobs end to end (jobs/s in total)", ">=", TARGET_RATE, o["rate"],
                 o["rate"] >= TARGET_RATE)]
    return lines, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", type=Path, help="where the cluster's folder goes (a real disk)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--statements", action="store_true",
                        help="diagnosis: load pg_stat_statements and print where the server's time went")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, n, where = args.child
        (child_ours if name == "ours" else child_naive)(int(n), where)
        return 0
    print(f"intake_pg: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start, "
          f"Python {sys.version.split()[0]}")
    try:
        result = measure(args.quick, args.dir, statements=args.statements)
    except FileNotFoundError as e:  # no PostgreSQL binaries
        print(f"intake_pg: skipped: {e}")
        return 1
    lines, verdicts = report(result)
    print("\n".join(lines))
    for name, op, limit, value, passed in verdicts:
        print(f"{'PASS' if passed else 'MISS'}  {name}: {value:,.0f} (target {op} {limit:,.0f})")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"result": result, "verdicts": verdicts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
