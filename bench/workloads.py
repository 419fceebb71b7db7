"""The task functions every contender runs: identical code for ours and the baselines.

Module-level functions, so spawned processes can import them (bench/ is on their PYTHONPATH).
"""

from __future__ import annotations

import time


def tiny(x: int) -> int:
    """A tiny task: the per-task cost is the framework's, not the task's."""
    return x + 1


def spin(n: int) -> int:
    """Pure-Python CPU work: ``n`` loop iterations (the GIL is held throughout)."""
    s = 0
    for i in range(n):
        s += i
    return s


def sleep5(x: int) -> None:
    """An I/O-bound task: 5 ms blocked outside the GIL."""
    time.sleep(0.005)


def calibrate_spin(micros: float, repeat: int = 7) -> int:
    """Iterations of ``spin`` taking ``micros`` µs on this machine (median of ``repeat``)."""
    n = 20_000
    per_iter = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        spin(n)
        per_iter.append((time.perf_counter() - t0) / n)
    per_iter.sort()
    return max(1, round(micros * 1e-6 / per_iter[len(per_iter) // 2]))
