#!/usr/bin/env python3
"""servicehost benchmarks: ours against pinned baselines, measured side by side in the same run.

    python bench/run.py                 # everything (about 4 minutes on 2 cores)
    python bench/run.py --quick         # a short smoke run: fewer tasks, same rounds
    python bench/run.py --only io,cpu   # some benchmarks (names below; prefixes work)
    python bench/run.py --json out.json # also write every sample and verdict as JSON

Benchmarks (targets from the performance issue):
  import   ``import servicehost`` over a bare interpreter                    <= 25 ms
  bulk     2,000,000 tiny fire-and-forget tasks: submit_many vs TPE          >= 20x
           ... vs the bare SimpleQueue loop fed in bulk                      >= 0.5x
           map (submit all, wait for results) vs TPE                         >= 3x
  cpu      ~20 µs pure-Python tasks: ours vs the bare SimpleQueue loop       >= 0.95x
  process  ~2 ms tasks on ProcessPool(2) vs two bare spawned processes       >= 0.9x
  io       5 ms sleeps: 20,000 at 64 and 256 threads, 40,000 at 1,024 vs SimpleQueue loop  >= 0.98x
  start    spawn → "ready" vs a bare interpreter with the same imports       <= 1.25x
  stop     SIGTERM on a busy service: exit − last task completion            <= 50 ms
  rss      idle service, 16 ThreadPool workers vs bare + 16 idle threads     <= 1.1x
  status   servicehost status answered on the control channel while 256 workers run 5 ms
           sleeps with a full queue (median; p99 printed)                    <= 50 ms
           ... with 8 CPU-bound workers: printed, no target (the GIL decides)
  counters the counters and the STATUS= line on vs off, bulk (per chunk) and per-task paths
           (bench/ops.py)                                                    >= 0.97x
  metrics  /metrics rendered with 20 ThreadPool(8) components (median)       <= 5 ms
           the HTTP listener idle: RSS with --http − without (median)        <= 1 MiB
           ... tiny tasks with it on vs off, bulk and per-task (bench/scrape.py)  >= 0.97x
  intake   trivial jobs end to end through the durable intake on SQLite, shipped defaults and
           prefetch 512 (bench/intake.py)                                     >= 30k jobs/s
           ... vs persist-queue's SQLiteAckQueue (a commit per put, get, ack)  >= 35x
           ... p99 submit latency at half the max rate, two rows: submit_many
               at half that rate; single submits (128 threads) at half their own
               max (printed beside: single submits asked for half the batched
               max, more than they reach: latency at their maximum)          <= 10 ms
  pg_intake the same on PostgreSQL: two node processes on one private cluster (fsync on), shipped
           defaults; printed beside a per-job-commit SKIP LOCKED queue (bench/intake_pg.py;
           skipped, saying why, without PostgreSQL's binaries)              >= 10k jobs/s
  wine     Windows under Wine's SCM, StartService → RUNNING (bench/wine_start.py; skipped, saying
           why, where the Wine harness is not found): the seed through servicehost.compat and
           examples/sample_service.py, each vs the seed with plain pywin32 imports   <= 1.2x

Every contender runs the same functions (bench/workloads.py) on the same items; baselines are
in bench/baselines.py and bench/bare/. The process-level baselines import exactly the stdlib
modules a servicehost service has loaded (probed at each run), so a ratio measures servicehost's
own cost; a "minimal imports" bare interpreter is printed beside them, without a target.
Children use a .pyc cache in /tmp (as an installed package has its .pyc files), also when
PYTHONDONTWRITEBYTECODE is set; --no-bytecode-cache keeps the environment as it is. Ratios are per round (contenders interleaved, order
rotated), reported as median/min/max over >= 5 rounds; a verdict uses the median. A MISS is
reported, never hidden; the exit status is 0 unless a benchmark could not run (ERROR).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
try:
    import servicehost  # noqa: F401  (only to know whether src/ must go on the path)
except ImportError:
    sys.path.insert(0, str(BENCH.parent / "src"))

import harness as h  # noqa: E402
from harness import Contender, Target, say  # noqa: E402


@dataclass
class Sizes:
    rounds: int
    import_runs: int  # interpreter runs per side per round
    bulk_tasks: int
    tpe_tasks: int
    cpu_tasks: int
    process_tasks: int
    io_tasks: int
    proc_rounds: int  # start / rss / stop rounds


FULL = Sizes(rounds=7, import_runs=10, bulk_tasks=2_000_000, tpe_tasks=200_000, cpu_tasks=50_000,
             process_tasks=1_000, io_tasks=20_000, proc_rounds=9)
QUICK = Sizes(rounds=5, import_runs=3, bulk_tasks=200_000, tpe_tasks=20_000, cpu_tasks=5_000,
              process_tasks=100, io_tasks=2_000, proc_rounds=5)

THREADS = 4  # worker threads for the bulk and cpu benchmarks (ours and every threaded baseline)
IO_THREADS = (64, 256, 1024)
IO_SLEEP = 0.005


@dataclass
class Result:
    name: str
    title: str
    contenders: list[Contender] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    info: list[tuple[str, list[float], str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # ok / skipped / error

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "status": self.status, "notes": self.notes,
            "contenders": [{"name": c.name, "unit": c.unit, "tasks": c.tasks, "samples": c.samples,
                            **vars(c.stat())} for c in self.contenders if c.samples],
            "targets": [t.to_json() for t in self.targets],
            "info": [{"name": n, "unit": u, "samples": s, **vars(h.Stat.of(s))} for n, s, u in self.info],
        }


def interleave(res: Result, sz: Sizes, steps: dict[Contender, Callable[[], float]], rounds: int | None = None,
               warmup: bool = False) -> None:
    """Run every contender once per round, in an order rotated each round; print each round.
    ``warmup``: one uncounted round first (page cache, .pyc files)."""
    order = list(steps)
    if warmup:
        for c in order:
            steps[c]()
        say("  warm-up round (not counted)")
    for r in range(rounds or sz.rounds):
        parts = []
        for c in h.rotate(order, r):
            c.samples.append(steps[c]())
            parts.append(f"{c.label()} {h.fmt_value(c.samples[-1], c.unit)}")
        say(f"  round {r + 1}: " + "; ".join(parts))


# -- import --------------------------------------------------------------------------------------
def bench_import(sz: Sizes) -> Result:
    res = Result("import", "`python -c \"import servicehost\"` vs `python -c \"pass\"` (wall clock, subprocesses)")
    from procs import run_quiet

    py = sys.executable
    bare = Contender("bare: python -c pass", "ms", short="bare", note=f"median of {sz.import_runs} runs per round")
    ours = Contender("ours: python -c 'import servicehost'", "ms", short="ours",
                     note=f"median of {sz.import_runs} runs per round")
    argv = {bare: [py, "-c", "pass"], ours: [py, "-c", "import servicehost"]}
    for c in argv:  # warm the page cache and .pyc files
        run_quiet(argv[c])
    for r in range(max(sz.rounds, 7) if sz is FULL else sz.rounds):
        runs: dict[Contender, list[float]] = {bare: [], ours: []}
        for i in range(sz.import_runs):
            for c in h.rotate([bare, ours], i):
                runs[c].append(run_quiet(argv[c]) * 1e3)
        for c in (bare, ours):
            c.samples.append(statistics.median(runs[c]))
        say(f"  round {r + 1}: bare {bare.samples[-1]:.1f} ms; ours {ours.samples[-1]:.1f} ms")
    res.contenders = [ours, bare]
    extra = h.diffs(ours.samples, bare.samples)
    res.targets.append(Target("import", "import servicehost: extra wall time over a bare interpreter", "<=", 25.0, "ms", extra))
    res.info.append(("import servicehost / bare interpreter", h.ratios(ours.samples, bare.samples), "x"))
    # -X importtime: servicehost's own cumulative import time (one run, informational).
    import subprocess

    out = subprocess.run([py, "-X", "importtime", "-c", "import servicehost"], env=h.child_env(),
                         capture_output=True, text=True, check=True).stderr
    for line in out.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s+servicehost$", line)
        if m:
            self_ms, cumulative_ms = int(m.group(1)) / 1e3, int(m.group(2)) / 1e3
            res.notes.append(f"-X importtime: servicehost cumulative {cumulative_ms:.1f} ms (self {self_ms:.1f} ms), one run")
    return res


# -- bulk ----------------------------------------------------------------------------------------
def bench_bulk(sz: Sizes) -> Result:
    from baselines import SimpleQueueLoop, Tpe, inline
    from ours import OursThreads
    from workloads import tiny

    n, nt = sz.bulk_tasks, sz.tpe_tasks
    res = Result("bulk", f"{n:,} tiny tasks (x + 1), {THREADS} pre-started threads; "
                         f"ThreadPoolExecutor on {nt:,} (compared in tasks/s)")
    items, titems = range(n), range(nt)
    ours, sq, tpe = OursThreads(THREADS), SimpleQueueLoop(THREADS), Tpe(THREADS)
    many = Contender("ours: ThreadPool.submit_many + join", "s", n, note="fire-and-forget, default chunks", short="submit_many")
    mapped = Contender("ours: ThreadPool.map", "s", n, note="submit all, wait for results", short="map")
    loop = Contender("bare SimpleQueue loop, fed in bulk", "s", n, note="fire-and-forget", short="SimpleQueue")
    exe = Contender("ThreadPoolExecutor submit+result", "s", nt, note="submit all, then .result() each", short="TPE")
    inl = Contender("inline calls", "s", n, short="inline")

    def run_many() -> float:
        before = ours.completed()
        t = h.timed(lambda: ours.submit_many(tiny, items))
        if ours.completed() - before != n:
            raise RuntimeError("submit_many: not every task ran")
        return t

    def run_map() -> float:
        out: list[Any] = []
        t = h.timed(lambda: out.append(ours.map(tiny, items)))
        if len(out[0]) != n or out[0][-1] != n:
            raise RuntimeError("map: wrong results")
        return t

    def run_loop() -> float:
        sq.prepare(tiny)  # threads started outside the timing
        return h.timed(lambda: sq.run(items))

    def run_tpe() -> float:
        out: list[Any] = []
        t = h.timed(lambda: out.append(tpe.run(tiny, titems)))
        if len(out[0]) != nt:
            raise RuntimeError("tpe: wrong results")
        return t

    # warm-up, untimed
    ours.submit_many(tiny, range(10_000))
    ours.map(tiny, range(10_000))
    tpe.run(tiny, range(1000))
    sq.prepare(tiny)
    sq.run(range(10_000))
    try:
        interleave(res, sz, {many: run_many, mapped: run_map, loop: run_loop, exe: run_tpe,
                             inl: lambda: h.timed(lambda: inline(tiny, items))})
    finally:
        ours.close()
        tpe.close()
    res.contenders = [many, mapped, loop, exe, inl]
    res.targets += [
        Target("bulk", "submit_many vs ThreadPoolExecutor submit+result (tasks/s)", ">=", 20.0, "x",
               h.speedups(many.samples, n, exe.samples, nt)),
        Target("bulk", "submit_many vs bare SimpleQueue loop fed in bulk (tasks/s)", ">=", 0.5, "x",
               h.speedups(many.samples, n, loop.samples, n)),
        Target("bulk", "map vs ThreadPoolExecutor submit all, .result() each (tasks/s)", ">=", 3.0, "x",
               h.speedups(mapped.samples, n, exe.samples, nt)),
    ]
    res.info += [
        ("submit_many vs inline calls (tasks/s)", h.speedups(many.samples, n, inl.samples, n), "x"),
        ("bare SimpleQueue loop vs inline calls (tasks/s)", h.speedups(loop.samples, n, inl.samples, n), "x"),
        ("ThreadPoolExecutor vs inline calls (tasks/s)", h.speedups(exe.samples, nt, inl.samples, n), "x"),
    ]
    return res


# -- cpu -----------------------------------------------------------------------------------------
def bench_cpu(sz: Sizes) -> Result:
    from baselines import SimpleQueueLoop, Tpe, inline
    from ours import OursThreads
    from workloads import calibrate_spin, spin

    n = sz.cpu_tasks
    nt = n // 5  # ThreadPoolExecutor: fewer tasks (it is 3-4x slower), compared in tasks/s
    iters = calibrate_spin(20)
    items = [iters] * n
    res = Result("cpu", f"{n:,} pure-Python tasks of ~20 µs (spin({iters})), {THREADS} pre-started threads; "
                        f"ThreadPoolExecutor on {nt:,} (compared in tasks/s)")
    ours, sq, tpe = OursThreads(THREADS), SimpleQueueLoop(THREADS), Tpe(THREADS)
    many = Contender("ours: ThreadPool.submit_many + join", "s", n, note="fire-and-forget, default chunks", short="ours")
    loop = Contender("bare SimpleQueue loop, fed in bulk", "s", n, short="SimpleQueue")
    exe = Contender("ThreadPoolExecutor submit+result", "s", nt, short="TPE")
    inl = Contender("inline calls", "s", n, short="inline")

    def run_many() -> float:
        before = ours.completed()
        t = h.timed(lambda: ours.submit_many(spin, items))
        if ours.completed() - before != n:
            raise RuntimeError("submit_many: not every task ran")
        return t

    def run_loop() -> float:
        sq.prepare(spin)
        return h.timed(lambda: sq.run(items))

    ours.submit_many(spin, items[:500])  # warm-up, untimed
    sq.prepare(spin)
    sq.run(items[:500])
    tpe.run(spin, items[:500])
    try:
        # More rounds than the others: CPU-bound threads are the most sensitive to a noisy machine.
        interleave(res, sz, {many: run_many, loop: run_loop,
                             exe: lambda: h.timed(lambda: tpe.run(spin, items[:nt])),
                             inl: lambda: h.timed(lambda: inline(spin, items))}, rounds=sz.rounds + 2)
    finally:
        ours.close()
        tpe.close()
    res.contenders = [many, loop, exe, inl]
    res.notes.append(f"one task inline: {statistics.median(inl.samples) / n * 1e6:.1f} µs (median)")
    res.targets.append(Target("cpu", "ThreadPool vs bare SimpleQueue loop, same threads (tasks/s)", ">=", 0.95, "x",
                              h.speedups(many.samples, n, loop.samples, n)))
    res.info += [
        ("ThreadPoolExecutor vs inline calls (tasks/s)", h.speedups(exe.samples, nt, inl.samples, n), "x"),
        ("ThreadPool vs inline calls (tasks/s)", h.speedups(many.samples, n, inl.samples, n), "x"),
        ("bare SimpleQueue loop vs inline calls (tasks/s)", h.speedups(loop.samples, n, inl.samples, n), "x"),
    ]
    return res


# -- process -------------------------------------------------------------------------------------
def bench_process(sz: Sizes) -> Result:
    from baselines import TwoProcesses
    from ours import process_pool_class
    from workloads import calibrate_spin, spin

    n = sz.process_tasks
    chunksize = max(1, n // 32)
    target = Target("process", "ProcessPool(2).map vs two bare spawned processes (tasks/s)", ">=", 0.9, "x")
    res = Result("process", f"{n:,} pure-Python tasks of ~2 ms, 2 processes, start-up excluded")
    res.targets.append(target)
    try:
        ProcessPool = process_pool_class()
        pool = ProcessPool(processes=2)
    except (ImportError, AttributeError, NotImplementedError, TypeError) as exc:
        target.status, target.note = "SKIPPED", "ProcessPool not available"
        res.status = "skipped"
        res.notes.append(f"SKIPPED: ProcessPool not available ({exc.__class__.__name__}: {exc})")
        return res
    iters = calibrate_spin(2000)
    items = [iters] * n
    res.title = f"{n:,} pure-Python tasks of ~2 ms (spin({iters})), 2 processes, start-up excluded"
    bare = TwoProcesses()
    ours = Contender(f"ours: ProcessPool(processes=2).map, chunksize={chunksize}", "s", n, short="ours")
    two = Contender("two bare spawned processes, one half each", "s", n, short="bare")

    def run_ours() -> float:
        out: list[Any] = []
        t = h.timed(lambda: out.append(pool.map(spin, items, chunksize=chunksize)))
        if list(out[0]) != [spin(iters)] * n:
            raise RuntimeError("ProcessPool.map: wrong results")
        return t

    def run_bare() -> float:
        return h.timed(lambda: bare.run(spin, items))

    try:
        if callable(getattr(pool, "wait_ready", None)):
            pool.wait_ready(60)
        pool.map(spin, [1] * 8, chunksize=1)  # start-up excluded: both sides are up and warm
        bare.warm(spin, 1)
        interleave(res, sz, {ours: run_ours, two: run_bare})
    finally:
        bare.close()
        pool.shutdown()
    res.contenders = [ours, two]
    target.samples = h.speedups(ours.samples, n, two.samples, n)
    return res


# -- io ------------------------------------------------------------------------------------------
def bench_io(sz: Sizes) -> Result:
    counts = ", ".join(f"{_io_tasks(sz, t):,} at {t}" for t in IO_THREADS)
    res = Result("io", f"tasks of time.sleep(0.005) ({counts} threads), pre-started threads; "
                       "fraction of ideal = (n × 5 ms / threads) / time")
    for threads in IO_THREADS:
        _io_at(res, sz, threads)
    return res


def _io_tasks(sz: Sizes, threads: int) -> int:
    """Tasks at ``threads``: ``io_tasks``, and at least ~40 per thread (40,000 at 1,024 threads)."""
    return max(sz.io_tasks, sz.io_tasks * threads // 512)


def _io_at(res: Result, sz: Sizes, threads: int) -> None:
    from baselines import SimpleQueueLoop, Tpe
    from ours import OursThreads
    from workloads import sleep5

    n = _io_tasks(sz, threads)
    ideal = n * IO_SLEEP / threads
    say(f"  -- {threads} threads (ideal {ideal:.3f} s)")
    items = range(n)
    ours, sq, tpe = OursThreads(threads), SimpleQueueLoop(threads), Tpe(threads)
    many = Contender(f"ours: submit_many + join @{threads}", "s", n, note="default chunks", short="submit_many")
    each = Contender(f"ours: submit per task + join @{threads}", "s", n, short="submit")
    loop = Contender(f"bare SimpleQueue loop @{threads}", "s", n, short="SimpleQueue")
    exe = Contender(f"ThreadPoolExecutor submit+result @{threads}", "s", n, short="TPE")

    def checked(step: Callable[[], None]) -> float:
        before = ours.completed()
        t = h.timed(step)
        if ours.completed() - before != n:
            raise RuntimeError("ThreadPool: not every task ran")
        return t

    def run_loop() -> float:
        sq.prepare(sleep5)  # threads started outside the timing
        return h.timed(lambda: sq.run(items))

    try:
        interleave(res, sz, {
            many: lambda: checked(lambda: ours.submit_many(sleep5, items)),
            each: lambda: checked(lambda: ours.submit_each(sleep5, items)),
            loop: run_loop,
            exe: lambda: h.timed(lambda: tpe.run(sleep5, items)),
        })
    finally:
        ours.close()
        tpe.close()
    res.contenders += [many, each, loop, exe]
    res.targets += [
        Target("io", f"@{threads} threads: submit_many vs bare SimpleQueue loop", ">=", 0.98, "x",
               h.speedups(many.samples, n, loop.samples, n)),
        Target("io", f"@{threads} threads: submit per task vs bare SimpleQueue loop", ">=", 0.98, "x",
               h.speedups(each.samples, n, loop.samples, n)),
    ]
    for c in (many, each, loop, exe):
        res.info.append((f"fraction of ideal: {c.name.removeprefix('ours: ')}",
                         [ideal / t * 100 for t in c.samples], "%"))
    res.info.append((f"@{threads}: ThreadPoolExecutor vs bare SimpleQueue loop",
                     h.speedups(exe.samples, n, loop.samples, n), "x"))


# -- start / rss / stop: whole processes ---------------------------------------------------------
def _probe_modules(tmp: Path) -> Path:
    """The stdlib modules a servicehost service has loaded at start(): the bare baseline's imports."""
    from ours import IDLE_SERVICE
    from procs import OURS_READY, Spawned

    out = tmp / "modules.txt"
    p = Spawned(_ours_idle_argv(tmp), OURS_READY, BENCH_MODULES_OUT=str(out))
    p.wait_ready()
    code = p.stop()
    if code != 0 or not out.exists():
        raise RuntimeError(f"probe of {IDLE_SERVICE} failed (exit {code}):\n{p.output()}")
    return out


MINIMAL_IMPORTS = ("threading", "logging", "signal", "queue")  # what a hand-written service needs


def _minimal_modules(tmp: Path) -> Path:
    out = tmp / "minimal.txt"
    out.write_text("\n".join(MINIMAL_IMPORTS) + "\n", encoding="utf-8")
    return out


def _ours_idle_argv(tmp: Path) -> list[str]:
    from ours import IDLE_SERVICE

    return [sys.executable, "-m", "servicehost", "run", str(IDLE_SERVICE), "--state-dir", str(tmp / "state")]


def bench_start(sz: Sizes) -> Result:
    from baselines import BARE_IDLE
    from procs import BARE_READY, OURS_READY, Spawned

    res = Result("start", "spawn → ready line on stderr: `python -m servicehost run bench/services/idle.py` "
                          "(ThreadPool(16)) vs bare interpreter with the same stdlib imports + 16 idle threads")
    with tempfile.TemporaryDirectory(prefix="servicehost-bench-") as d:
        tmp = Path(d)
        modules = _probe_modules(tmp)
        count = len(modules.read_text().split())
        res.notes.append(f"bare baseline imports the {count} modules the service had loaded at start()")
        minimal = _minimal_modules(tmp)
        ours = Contender("ours: servicehost run idle.py → 'ready: every service said so'", "ms", short="ours")
        bare = Contender("bare interpreter, same imports → 'bare: ready'", "ms", short="bare")
        small = Contender(f"bare interpreter, only {', '.join(MINIMAL_IMPORTS)} → 'bare: ready'", "ms",
                          short="bare-minimal", note="no target: shows the stdlib imports' cost")

        def one(argv: list[str], marker: bytes) -> float:
            p = Spawned(argv, marker)
            try:
                t = p.wait_ready() * 1e3
            finally:
                code = p.stop()
            if code != 0:
                raise RuntimeError(f"{argv} exited {code}:\n{p.output()}")
            return t

        interleave(res, sz, {ours: lambda: one(_ours_idle_argv(tmp), OURS_READY),
                             bare: lambda: one([sys.executable, str(BARE_IDLE), str(modules), "16"], BARE_READY),
                             small: lambda: one([sys.executable, str(BARE_IDLE), str(minimal), "16"], BARE_READY)},
                   rounds=sz.proc_rounds, warmup=True)
    res.contenders = [ours, bare, small]
    res.info.append(("start→ready vs bare interpreter with minimal imports", h.ratios(ours.samples, small.samples), "x"))
    res.targets.append(Target("start", "start→ready vs bare interpreter with the same imports", "<=", 1.25, "x",
                              h.ratios(ours.samples, bare.samples)))
    res.info.append(("start→ready: ours − bare", h.diffs(ours.samples, bare.samples), "ms"))
    return res


def bench_rss(sz: Sizes) -> Result:
    from baselines import BARE_IDLE
    from procs import BARE_READY, OURS_READY, Spawned, is_linux_proc

    res = Result("rss", "VmRSS once idle: service with ThreadPool(16) vs bare interpreter, same stdlib imports + 16 idle threads")
    target = Target("rss", "idle RSS vs bare interpreter + 16 idle threads", "<=", 1.1, "x")
    res.targets.append(target)
    if not is_linux_proc():
        target.status, target.note, res.status = "SKIPPED", "no /proc", "skipped"
        return res
    with tempfile.TemporaryDirectory(prefix="servicehost-bench-") as d:
        tmp = Path(d)
        modules = _probe_modules(tmp)
        minimal = _minimal_modules(tmp)
        ours = Contender("ours: servicehost run idle.py (ThreadPool(16))", "MiB", short="ours")
        bare = Contender("bare interpreter, same imports, 16 idle threads", "MiB", short="bare")
        small = Contender(f"bare interpreter, only {', '.join(MINIMAL_IMPORTS)}, 16 idle threads", "MiB",
                          short="bare-minimal", note="no target: shows the stdlib imports' cost")

        def one(argv: list[str], marker: bytes) -> float:
            p = Spawned(argv, marker)
            try:
                p.wait_ready()
                time.sleep(0.5)  # idle: every thread blocked, start-up garbage settled
                rss = p.rss_mib()
            finally:
                code = p.stop()
            if code != 0:
                raise RuntimeError(f"{argv} exited {code}:\n{p.output()}")
            return rss

        interleave(res, sz, {ours: lambda: one(_ours_idle_argv(tmp), OURS_READY),
                             bare: lambda: one([sys.executable, str(BARE_IDLE), str(modules), "16"], BARE_READY),
                             small: lambda: one([sys.executable, str(BARE_IDLE), str(minimal), "16"], BARE_READY)},
                   rounds=sz.proc_rounds, warmup=True)
    res.contenders = [ours, bare, small]
    res.info.append(("idle RSS vs bare interpreter with minimal imports", h.ratios(ours.samples, small.samples), "x"))
    target.samples = h.ratios(ours.samples, bare.samples)
    res.info.append(("RSS: ours − bare", h.diffs(ours.samples, bare.samples), "MiB"))
    return res


def bench_stop(sz: Sizes) -> Result:
    from baselines import BARE_BUSY
    from ours import BUSY_SERVICE
    from procs import BARE_READY, OURS_READY, Spawned
    from workloads import calibrate_spin

    spin_1ms = calibrate_spin(1000)
    res = Result("stop", f"SIGTERM to a busy service (4 workers, tasks spin({spin_1ms}) ≈ 1 ms): "
                         "process exit − last task completion (time.time() in both processes)")
    busy_for = 0.3
    with tempfile.TemporaryDirectory(prefix="servicehost-bench-") as d:
        tmp = Path(d)
        modules = _probe_modules(tmp)  # the bare process loads (and tears down) the same stdlib modules
        ours = Contender("ours: servicehost run busy.py: exit − last task", "ms", short="ours")
        bare = Contender("bare threads + queue.Queue, same imports: exit − last task", "ms", short="bare")
        drains: dict[Contender, list[float]] = {ours: [], bare: []}

        def one(c: Contender, argv: list[str], marker: bytes) -> float:
            last_file = tmp / "last.txt"
            last_file.unlink(missing_ok=True)
            p = Spawned(argv, marker, BENCH_LAST_FILE=str(last_file), BENCH_SPIN=str(spin_1ms), BENCH_WORKERS="4")
            p.wait_ready()
            time.sleep(busy_for)
            signalled = time.time()
            p.terminate()
            code = p.wait()
            exited = time.time()
            if code != 0 or not last_file.exists():
                raise RuntimeError(f"{argv} exited {code}:\n{p.output()}")
            last, count = last_file.read_text().split()
            if int(count) == 0:
                raise RuntimeError(f"{argv}: no task completed")
            drains[c].append((float(last) - signalled) * 1e3)
            return (exited - float(last)) * 1e3

        interleave(res, sz, {
            ours: lambda: one(ours, [sys.executable, "-m", "servicehost", "run", str(BUSY_SERVICE),
                                     "--state-dir", str(tmp / "state")], OURS_READY),
            bare: lambda: one(bare, [sys.executable, str(BARE_BUSY), str(modules)], BARE_READY),
        }, rounds=sz.proc_rounds, warmup=True)
    res.contenders = [ours, bare]
    res.targets.append(Target("stop", "busy service: process exit − last task completion", "<=", 50.0, "ms",
                              list(ours.samples)))
    k = len(ours.samples)  # the warm-up round's figures are not counted
    res.info += [("ours: SIGTERM → last task completion (drain)", drains[ours][-k:], "ms"),
                 ("bare: SIGTERM → last task completion (drain)", drains[bare][-k:], "ms"),
                 ("exit − last task: ours − bare", h.diffs(ours.samples, bare.samples), "ms")]
    return res


# -- wine: the Windows start under Wine's SCM (bench/wine_start.py) ------------------------------
# -- status / counters: seeing inside a running service (bench/ops.py) ------------------------------------
STATUS_IO_WORKERS, STATUS_CPU_WORKERS = 256, 8


def bench_status(sz: Sizes) -> Result:
    import ops
    from workloads import calibrate_spin, sleep5, spin

    calls = 100 if sz is FULL else 40
    res = Result("status", f"servicehost status on the control channel, asked by another process every "
                           f"{ops.STATUS_SPACING * 1000:.0f} ms ({calls} calls a round), while the pool's queue is full")
    say(f"  -- {STATUS_IO_WORKERS} workers on 5 ms sleeps (I/O-bound), queue 1024")
    io = ops.measure_status(STATUS_IO_WORKERS, sleep5, 1024, sz.rounds, calls, say)
    res.notes.append(f"@{STATUS_IO_WORKERS} I/O-bound workers: queue {io.depth}/1024 when measuring began; "
                     f"p99 {ops.p99(io.every):.2f} ms over {len(io.every)} calls, max {max(io.every):.2f} ms")
    res.targets.append(Target("status", f"status answer, {STATUS_IO_WORKERS} I/O-bound workers, queue full (median)",
                              "<=", 50.0, "ms", io.every))
    res.info += [(f"status p99 per round, {STATUS_IO_WORKERS} I/O-bound workers", io.p99s, "ms"),
                 (f"bare socket floor, {STATUS_IO_WORKERS} I/O-bound workers", io.bare, "ms"),
                 (f"bare socket floor p99 per round, {STATUS_IO_WORKERS} I/O-bound workers", io.bare_p99s, "ms")]
    iters = calibrate_spin(1000)

    def cpu_task(_: int) -> int:
        return spin(iters)

    say(f"  -- {STATUS_CPU_WORKERS} workers on ~1 ms pure-Python tasks (CPU-bound: the GIL decides), queue 64")
    cpu = ops.measure_status(STATUS_CPU_WORKERS, cpu_task, 64, sz.rounds, calls, say)
    res.notes.append(f"@{STATUS_CPU_WORKERS} CPU-bound workers: p99 {ops.p99(cpu.every):.2f} ms over {len(cpu.every)} "
                     f"calls, max {max(cpu.every):.2f} ms (no target: a thread holding the GIL decides when the "
                     "channel runs)")
    res.info += [(f"status answer, {STATUS_CPU_WORKERS} CPU-bound workers (no target)", cpu.every, "ms"),
                 (f"status p99 per round, {STATUS_CPU_WORKERS} CPU-bound workers", cpu.p99s, "ms"),
                 (f"bare socket floor, {STATUS_CPU_WORKERS} CPU-bound workers", cpu.bare, "ms")]
    return res


def bench_counters(sz: Sizes) -> Result:
    import ops
    from ours import OursThreads
    from workloads import tiny

    n, each_n = sz.bulk_tasks, max(100_000, sz.tpe_tasks)
    pairs = 10  # each round: this many on/off pairs of n / pairs tasks, alternating which goes first
    res = Result("counters", f"tiny tasks (x + 1) on ThreadPool({THREADS}) with the counters and the STATUS= line on "
                             f"(read every {0.05 * 1000:.0f} ms) and off: {n:,} through submit_many (counted per chunk), "
                             f"{each_n:,} through submit (counted per task); each round {pairs} on/off pairs of a "
                             "tenth, alternating (a shared machine's load drifts slower than a pair), fresh pools each round; "
                             "off: ThreadPool's worker loop without its lines marked '# counters'; compared in tasks/s")
    uncounted = ops.uncounted_pool_class()
    line = ops.StatusLine([], 0.05)
    bulk_on = Contender("bulk, counters + STATUS= on", "s", n, short="bulk on")
    bulk_off = Contender("bulk, counters off", "s", n, short="bulk off")
    each_on = Contender("per task, counters + STATUS= on", "s", each_n, short="each on")
    each_off = Contender("per task, counters off", "s", each_n, short="each off")

    def timed_on(step: Callable[[], None]) -> float:
        line.active.set()  # the STATUS= line only while "on" runs
        try:
            return h.timed(step)
        finally:
            line.active.clear()

    def paired(path: str, count: int, on: OursThreads, off: OursThreads) -> tuple[float, float]:
        part = range(count // pairs)
        run = (lambda p: p.submit_many(tiny, part)) if path == "bulk" else (lambda p: p.submit_each(tiny, part))
        before = on.completed(), off.completed()
        t_on = t_off = 0.0
        for i in range(pairs):
            if i % 2 == 0:
                t_on += timed_on(lambda: run(on))
                t_off += h.timed(lambda: run(off))
            else:
                t_off += h.timed(lambda: run(off))
                t_on += timed_on(lambda: run(on))
        if (on.completed() - before[0], off.completed() - before[1]) != (count, count):
            raise RuntimeError(f"{path}: not every task ran")
        return t_on, t_off

    def fresh(first_on: bool) -> tuple[OursThreads, OursThreads]:
        made = {}
        for kind in (("on", "off") if first_on else ("off", "on")):  # made in alternating order
            if kind == "on":
                made[kind] = OursThreads(THREADS)
            else:  # the same helper around the uncounted pool
                made[kind] = OursThreads.__new__(OursThreads)
                made[kind].pool = uncounted(THREADS, name="bench-uncounted")
        for pool in made.values():  # warm-up, untimed
            pool.submit_many(tiny, range(10_000))
            pool.submit_each(tiny, range(10_000))
        return made["on"], made["off"]

    try:
        for r in range(sz.rounds + 2):
            on, off = fresh(r % 2 == 0)
            line.pools = [on.pool]
            try:
                for path, count, c_on, c_off in (("bulk", n, bulk_on, bulk_off), ("each", each_n, each_on, each_off)):
                    t_on, t_off = paired(path, count, on, off)
                    c_on.samples.append(t_on)
                    c_off.samples.append(t_off)
            finally:
                on.close()
                off.close()
            say(f"  round {r + 1}: bulk on {h.fmt_value(bulk_on.samples[-1], 's')}, off "
                f"{h.fmt_value(bulk_off.samples[-1], 's')}; per task on {h.fmt_value(each_on.samples[-1], 's')}, off "
                f"{h.fmt_value(each_off.samples[-1], 's')}")
    finally:
        line.close()
    res.contenders = [bulk_on, bulk_off, each_on, each_off]
    res.notes.append(f"STATUS= lines sent while measuring: {line.sent}")
    res.targets += [
        Target("counters", "bulk path: counters + STATUS= on vs off (tasks/s)", ">=", 0.97, "x",
               h.speedups(bulk_on.samples, n, bulk_off.samples, n)),
        Target("counters", "per-task path: counters + STATUS= on vs off (tasks/s)", ">=", 0.97, "x",
               h.speedups(each_on.samples, each_n, each_off.samples, each_n)),
    ]
    return res


# -- metrics: the Prometheus scrape and the HTTP listener (bench/scrape.py) -------------------------------
def bench_metrics(sz: Sizes) -> Result:
    import scrape
    from ours import OursThreads
    from procs import OURS_READY, Spawned, is_linux_proc
    from workloads import tiny

    res = Result("metrics", f"/metrics of {scrape.COMPONENTS} ThreadPool({scrape.WORKERS}) components rendered; "
                            "the HTTP listener idle: its RSS, and tiny tasks with it on and off")
    # render: one host, full latency windows; each round is RENDERS renders
    host, close = scrape.render_host()
    renders = Contender(f"render /metrics, {scrape.COMPONENTS} components", "ms", short="render")
    per_round: list[float] = []
    cpu: list[float] = []
    try:
        scrape.measure_render(host, 20)  # warm-up: imports, caches
        for r in range(sz.rounds):
            times, cpu_times = scrape.measure_render(host)
            renders.samples += times
            cpu += cpu_times
            per_round.append(scrape.median(times))
            say(f"  round {r + 1}: render median {per_round[-1]:.2f} ms (CPU {scrape.median(cpu_times):.2f} ms), "
                f"max {max(times):.2f} ms")
        body, lines = scrape.size(host)
    finally:
        close()
    res.notes.append(f"one scrape: {body:,} bytes, {lines:,} lines")
    res.targets.append(Target("metrics", f"/metrics render, {scrape.COMPONENTS} components (median)", "<=", 5.0,
                              "ms", renders.samples))
    res.info += [("render median per round", per_round, "ms"),
                 ("render CPU time (this thread's; no target)", cpu, "ms")]
    # tasks: the listener idle in this process, on and off, the same pool on both sides
    n, each_n = sz.bulk_tasks, sz.tpe_tasks
    listener_host, close_listener = scrape.idle_host()
    ours = OursThreads(THREADS)
    bulk_on = Contender("bulk, listener on", "s", n, short="bulk on")
    bulk_off = Contender("bulk, listener off", "s", n, short="bulk off")
    each_on = Contender("per task, listener on", "s", each_n, short="each on")
    each_off = Contender("per task, listener off", "s", each_n, short="each off")
    items, each_items = range(n), range(each_n)

    def timed(step: Callable[[], None], count: int, listening: bool) -> float:
        before = ours.completed()
        if listening:
            with scrape.Listener(listener_host):
                t = h.timed(step)
        else:
            t = h.timed(step)
        if ours.completed() - before != count:
            raise RuntimeError("not every task ran")
        return t

    ours.submit_many(tiny, range(10_000))  # warm-up, untimed
    ours.submit_each(tiny, range(10_000))
    try:
        interleave(res, sz, {
            bulk_on: lambda: timed(lambda: ours.submit_many(tiny, items), n, True),
            bulk_off: lambda: timed(lambda: ours.submit_many(tiny, items), n, False),
            each_on: lambda: timed(lambda: ours.submit_each(tiny, each_items), each_n, True),
            each_off: lambda: timed(lambda: ours.submit_each(tiny, each_items), each_n, False),
        }, rounds=2 * sz.rounds + 1)  # short steps whose spread is mostly the machine's: more rounds
    finally:
        ours.close()
        close_listener()
    res.contenders = [renders, bulk_on, bulk_off, each_on, each_off]
    res.targets += [
        Target("metrics", "bulk path: listener idle on vs off (tasks/s)", ">=", 0.97, "x",
               h.speedups(bulk_on.samples, n, bulk_off.samples, n)),
        Target("metrics", "per-task path: listener idle on vs off (tasks/s)", ">=", 0.97, "x",
               h.speedups(each_on.samples, each_n, each_off.samples, each_n)),
    ]
    # rss: whole processes, with --http and without
    target = Target("metrics", "idle RSS: --http on − off", "<=", 1.0, "MiB")
    res.targets.append(target)
    if not is_linux_proc():
        target.status, target.note = "SKIPPED", "no /proc"
        return res
    with tempfile.TemporaryDirectory(prefix="servicehost-bench-") as d:
        tmp = Path(d)
        on = Contender("servicehost run idle.py --http 127.0.0.1:0", "MiB", short="http on")
        off = Contender("servicehost run idle.py", "MiB", short="http off")

        def one(argv: list[str]) -> float:
            p = Spawned(argv, OURS_READY)
            try:
                p.wait_ready()
                time.sleep(0.5)  # idle: every thread blocked, start-up garbage settled
                rss = p.rss_mib()
            finally:
                code = p.stop()
            if code != 0:
                raise RuntimeError(f"{argv} exited {code}:\n{p.output()}")
            return rss

        interleave(res, sz, {on: lambda: one(_ours_idle_argv(tmp) + ["--http", "127.0.0.1:0"]),
                             off: lambda: one(_ours_idle_argv(tmp))}, rounds=sz.proc_rounds, warmup=True)
    res.contenders += [on, off]
    target.samples = h.diffs(on.samples, off.samples)
    return res


def bench_wine(sz: Sizes) -> Result:
    import wine_start

    res = Result("wine", wine_start.TITLE)
    # More rounds than the other process benchmarks: Wine's timings are the noisiest here.
    wine_start.measure(res, rounds=2 * sz.proc_rounds - 1, say=say)  # skipped, saying why, without Wine
    return res


def bench_intake(sz: Sizes) -> Result:
    import intake

    res = Result("intake", intake.TITLE)
    out = intake.measure(quick=sz is not FULL, folder=None, say=say)
    for name, secs in out["seconds"].items():
        if secs:
            res.contenders.append(Contender(name, "s", out["sizes"][name], samples=secs, short=name))
    res.notes += out["notes"]
    rates = out["samples"]
    for shape in intake.SHAPES:
        res.targets.append(Target("intake", f"{shape}, trivial jobs end to end", ">=", intake.TARGET_RATE / 1000,
                                  "k jobs/s", [r / 1000 for r in rates[shape]]))
        res.targets.append(Target("intake", f"{shape} / persist-queue SQLiteAckQueue", ">=", intake.TARGET_RATIO,
                                  "x", h.ratios(rates[shape], rates["persist-queue"]) if rates["persist-queue"] else []))
    lat = out["latency"]
    for key in intake.LATENCY_ROWS:
        res.targets.append(Target("intake", intake.latency_row(key, lat), "<=", intake.TARGET_P99_MS, "ms",
                                  [run["p99"] * 1e3 for run in lat[key]["runs"]]))
        res.info.append((f"{key}: p50 submit latency", [run["p50"] * 1e3 for run in lat[key]["runs"]], "ms"))
    over = lat["overload"]["runs"]
    res.info.append((f"no target, {intake.latency_row('overload', lat)}: p99", [run["p99"] * 1e3 for run in over], "ms"))
    res.info.append(("single submits from 128 threads: the most reached in each round",
                     [run["most"] / 1000 for run in lat["single"]["runs"]], "k jobs/s"))
    return res


def bench_intake_pg(sz: Sizes) -> Result:
    import intake_pg

    res = Result("pg_intake", intake_pg.TITLE)
    target = Target("pg_intake", "ours, two nodes, trivial jobs end to end (in total)", ">=",
                    intake_pg.TARGET_RATE / 1000, "k jobs/s")
    res.targets.append(target)
    try:
        out = intake_pg.measure(quick=sz is not FULL, folder=None, say=say)
    except FileNotFoundError as exc:  # no PostgreSQL binaries
        target.status, target.note, res.status = "SKIPPED", str(exc), "skipped"
        res.notes.append(f"SKIPPED: {exc}")
        return res
    o, b = out["ours"], out["naive"]
    res.contenders.append(Contender("ours: 2 nodes, shipped defaults", "s", o["jobs"], samples=[o["seconds"]],
                                    short="ours"))
    res.contenders.append(Contender("per-job commit, 2 processes", "s", b["jobs"], samples=[b["seconds"]],
                                    short="per-job commit"))
    target.samples.append(o["rate"] / 1000)
    res.info.append(("ours / per-job commit (jobs/s)", [o["rate"] / b["rate"]], "x"))
    res.info.append(("database commits/s, ours", [o["db_commits_per_s"]], "/s"))
    res.info.append(("database commits/s, per-job commit", [b["db_commits_per_s"]], "/s"))
    res.notes.append("ours per node: " + ", ".join(f"{r:,.0f} jobs/s" for r in o["per_node"]))
    return res


BENCHMARKS: dict[str, Callable[[Sizes], Result]] = {
    "import": bench_import, "bulk": bench_bulk, "cpu": bench_cpu, "process": bench_process,
    "io": bench_io, "start": bench_start, "stop": bench_stop, "rss": bench_rss, "wine": bench_wine,
    "status": bench_status, "counters": bench_counters, "metrics": bench_metrics, "intake": bench_intake,
    "pg_intake": bench_intake_pg,
}


def select(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    chosen = []
    for word in filter(None, (w.strip() for w in only.split(","))):
        matches = [n for n in BENCHMARKS if n.startswith(word)]
        if not matches:
            raise SystemExit(f"run.py: no benchmark {word!r}; known: {', '.join(BENCHMARKS)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def report(res: Result) -> None:
    say(f"\n{res.title}")
    for note in res.notes:
        say(f"  {note}")
    if res.contenders:
        say(h.contenders_table(res.contenders))
    if res.targets:
        say(h.targets_table(res.targets))
    if res.info:
        say(h.info_table(res.info))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (fewer tasks)")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", metavar="FILE", help="write every sample and verdict here")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="children follow PYTHONDONTWRITEBYTECODE as set (default: a .pyc cache in /tmp)")
    args = parser.parse_args(argv)
    env_note = h.setup_env(bytecode_cache=not args.no_bytecode_cache)
    sz = QUICK if args.quick else FULL
    names = select(args.only)
    started = time.perf_counter()
    import servicehost

    say(f"servicehost bench ({'quick' if args.quick else 'full'}): Python {platform.python_version()} "
        f"on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; servicehost from "
        f"{Path(servicehost.__file__).parent}")
    say(f"median/min/max over >= {sz.rounds} rounds; ratios per round, contenders interleaved; {env_note}")
    results: list[Result] = []
    for name in names:
        say(f"\n=== {name} ===")
        t0 = time.perf_counter()
        try:
            res = BENCHMARKS[name](sz)
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            res = Result(name, f"{name}: ERROR", status="error")
            res.targets.append(Target(name, f"{name}: could not run", ">=", 0, "x", status="ERROR",
                                      note=f"{exc.__class__.__name__}: {exc}"))
        results.append(res)
        report(res)
        say(f"  ({name} took {time.perf_counter() - t0:.1f} s)")
    targets = [t for r in results for t in r.targets]
    total = time.perf_counter() - started
    say(f"\n=== summary ({'quick' if args.quick else 'full'} run, {total:.0f} s) ===")
    say(h.targets_table(targets, with_bench=True))
    counts = {s: sum(t.status == s for t in targets) for s in ("PASS", "MISS", "SKIPPED", "ERROR")}
    say(", ".join(f"{v} {k}" for k, v in counts.items() if v))
    if args.json:
        doc = {"mode": "quick" if args.quick else "full", "python": platform.python_version(),
               "cpus": os.cpu_count(), "seconds": total, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "benchmarks": {r.name: r.to_json() for r in results},
               "summary": [t.to_json() for t in targets]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    return 1 if counts["ERROR"] else 0


if __name__ == "__main__":
    sys.exit(main())
