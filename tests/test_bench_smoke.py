"""Keep bench/ from rotting: the quick import benchmark runs and prints a ratio line.

Asserts only that it runs (exit 0) and reports a figure with a verdict; never a timing or PASS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_import_runs_and_prints_a_ratio() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "import"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "=== summary" in out, out
    # a target row: name, median, min, max, need, verdict (whichever verdict it is)
    assert re.search(r"^import\s+import servicehost: .*-?\d+\.\d+ ms .*<= 25\.0 ms\s+(PASS|MISS)$", out, re.M), out
    assert re.search(r"import servicehost / bare interpreter\s+\d+\.\d+x", out), out
