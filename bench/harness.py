"""Bench plumbing: samples and their statistics, target verdicts, side-by-side tables, child
environments. Nothing here measures anything by itself.

Every ratio is computed per round, from contenders measured in that same round (interleaved,
their order rotated each round), then summarised as median / min / max over the rounds. A
verdict uses the median ratio: the machine is noisy, and a single lucky or unlucky round must
not decide it.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SRC = ROOT / "src"


PYC_PREFIX = Path(tempfile.gettempdir()) / "servicehost-bench-pycache"


def setup_env(bytecode_cache: bool = True) -> str:
    """Set this process's environment, which every child inherits (subprocesses, spawned pools):
    servicehost (src/) and bench/ importable; no service-manager socket. Returns a description.

    ``bytecode_cache``: children read and write .pyc files under PYC_PREFIX (outside the repo),
    even when PYTHONDONTWRITEBYTECODE is set, as an installed package has its .pyc files. Without
    it, a sandbox that sets PYTHONDONTWRITEBYTECODE recompiles every servicehost module from
    source in every child, a cost no deployed service pays (the stdlib keeps its .pyc files).
    """
    paths = [str(SRC), str(BENCH)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                      if p and p not in (str(SRC), str(BENCH))]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    os.environ.pop("NOTIFY_SOCKET", None)  # never talk to a real service manager from a benchmark
    if not bytecode_cache:
        return "bytecode cache: as the environment says" + (
            " (PYTHONDONTWRITEBYTECODE is set: children compile servicehost from source)"
            if os.environ.get("PYTHONDONTWRITEBYTECODE") else "")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(PYC_PREFIX)
    return f"bytecode cache: children use .pyc files under {PYC_PREFIX} (warm-up rounds fill it)"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this one's (see ``setup_env``) plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    return env


def timed(fn: Callable[[], Any]) -> float:
    """Wall time of one call to ``fn`` (perf_counter), after a full collection."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- statistics ----------------------------------------------------------------------------------
@dataclass
class Stat:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stat:
        return cls(statistics.median(samples), min(samples), max(samples))


@dataclass(eq=False)
class Contender:
    """One side of a comparison: a name and one sample per round (seconds, ms, MiB, ...)."""

    name: str
    unit: str  # "s" (wall time of one run), "ms", "MiB"
    tasks: int | None = None  # for "s": tasks per run, to print a rate
    samples: list[float] = field(default_factory=list)
    note: str = ""
    short: str = ""  # label in the per-round progress lines

    def label(self) -> str:
        return self.short or self.name

    def stat(self) -> Stat:
        return Stat.of(self.samples)


@dataclass
class Target:
    """One target of the issue: a figure per round compared with a limit."""

    bench: str
    name: str
    op: str  # ">=" or "<="
    limit: float
    unit: str  # "x" for ratios, "ms", ...
    samples: list[float] = field(default_factory=list)
    status: str = ""  # PASS / MISS / SKIPPED / ERROR
    note: str = ""

    def decide(self) -> str:
        if not self.samples:
            self.status = self.status or "SKIPPED"
            return self.status
        med = statistics.median(self.samples)
        ok = med >= self.limit if self.op == ">=" else med <= self.limit
        self.status = "PASS" if ok else "MISS"
        return self.status

    def need(self) -> str:
        return f"{self.op} {fmt_value(self.limit, self.unit)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bench": self.bench, "target": self.name, "op": self.op, "limit": self.limit,
                               "unit": self.unit, "status": self.status, "samples": self.samples}
        if self.samples:
            s = Stat.of(self.samples)
            out.update(median=s.median, min=s.min, max=s.max)
        if self.note:
            out["note"] = self.note
        return out


def ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Per-round ratios num[i] / den[i]."""
    return [a / b for a, b in zip(num, den, strict=True)]


def diffs(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-round differences a[i] - b[i]."""
    return [x - y for x, y in zip(a, b, strict=True)]


def speedups(ours_time: Sequence[float], ours_tasks: int, base_time: Sequence[float], base_tasks: int) -> list[float]:
    """Per-round throughput ratio (ours tasks/s) / (baseline tasks/s)."""
    return [(ours_tasks / a) / (base_tasks / b) for a, b in zip(ours_time, base_time, strict=True)]


# -- formatting ----------------------------------------------------------------------------------
def fmt_value(v: float, unit: str) -> str:
    if unit == "x":
        return f"{v:.3f}x" if v < 10 else f"{v:.1f}x"
    if unit == "s":
        return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.3f} s"
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "MiB":
        return f"{v:.2f} MiB"
    if unit == "%":
        return f"{v:.1f} %"
    return f"{v:.4g} {unit}"


def fmt_rate(tasks_per_s: float) -> str:
    if tasks_per_s >= 1e6:
        return f"{tasks_per_s / 1e6:.2f} M/s"
    if tasks_per_s >= 1e3:
        return f"{tasks_per_s / 1e3:.1f} k/s"
    return f"{tasks_per_s:.0f} /s"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def contenders_table(contenders: list[Contender]) -> str:
    with_tasks = any(c.tasks for c in contenders)
    rows = []
    for c in contenders:
        s = c.stat()
        row = [c.name]
        if with_tasks:
            row.append(f"{c.tasks:,}" if c.tasks else "")
        row += [fmt_value(s.median, c.unit), fmt_value(s.min, c.unit), fmt_value(s.max, c.unit)]
        if with_tasks:
            row.append(fmt_rate(c.tasks / s.median) if c.unit == "s" and c.tasks else "")
        rows.append(row + [c.note])
    header = ["contender"] + (["tasks/run"] if with_tasks else []) + ["median", "min", "max"]
    header += (["tasks/s (median)"] if with_tasks else []) + [""]
    return table(rows, header)


def targets_table(targets: list[Target], with_bench: bool = False) -> str:
    rows = []
    for t in targets:
        t.decide()
        head = [t.bench] if with_bench else []
        if t.samples:
            s = Stat.of(t.samples)
            rows.append([*head, t.name, fmt_value(s.median, t.unit), fmt_value(s.min, t.unit),
                         fmt_value(s.max, t.unit), t.need(), t.status])
        else:
            rows.append([*head, t.name, "-", "-", "-", t.need(), f"{t.status}: {t.note}" if t.note else t.status])
    header = (["bench"] if with_bench else []) + ["target", "median", "min", "max", "need", "verdict"]
    return table(rows, header)


def info_table(rows: list[tuple[str, list[float], str]]) -> str:
    """Informational figures (no target): name, per-round samples, unit."""
    out = []
    for name, samples, unit in rows:
        s = Stat.of(samples)
        out.append([name, fmt_value(s.median, unit), fmt_value(s.min, unit), fmt_value(s.max, unit)])
    return table(out, ["figure (no target)", "median", "min", "max"])


def say(*args: Any) -> None:
    print(*args, flush=True)


def rotate(seq: list[Any], k: int) -> list[Any]:
    """``seq`` rotated by ``k``: each round starts with a different contender."""
    k %= len(seq)
    return seq[k:] + seq[:k]


def python() -> str:
    return sys.executable
