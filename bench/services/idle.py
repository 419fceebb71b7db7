"""An idle service: one ThreadPool of 16 workers, nothing to do. Used for start→ready and RSS.

``BENCH_MODULES_OUT=FILE``: write the standard-library modules loaded by the time ``start()``
runs (one per line), so the bare baseline (bench/bare/idle.py) imports exactly the same ones.
"""

from __future__ import annotations

import os
import sys

from servicehost import Service, ThreadPool

WORKERS = 16


class Idle(Service):
    name = "bench-idle"

    def start(self) -> None:
        self.pool = self.use(ThreadPool(WORKERS, name="idle"))
        out = os.environ.get("BENCH_MODULES_OUT")
        if out:
            own = {__name__, "__main__", "__mp_main__"}
            names = sorted(m for m in sys.modules
                           if m not in own and m.partition(".")[0] != "servicehost")
            with open(out, "w", encoding="utf-8") as f:
                f.write("\n".join(names) + "\n")
