"""The service the operations-view tests run as a real process (``servicehost run
tests/ops/ops_app.py --http 127.0.0.1:0 --gate DIR``).

A timer submits a small task to a pool every 50 ms (so counters move). Files in ``--gate`` steer it:

    unready       the readiness check "gate" answers UNHEALTHY while it exists
    degraded      ... DEGRADED while it exists (still passes)
    slow          the check "gate" sleeps 30 s (its 0.5 s timeout makes it UNHEALTHY; a probe never waits more)
    hang          the next task blocks until the file is removed (a hung worker past hang_timeout)
    fail          the next task raises (the last error)

``--hostile`` names the pool and the check with markup (``<img src=x onerror=...>``, ``</script>``), to
prove the page renders names as text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from servicehost import Health, PeriodicTimer, Service, ThreadPool, setting

HOSTILE = '<img src=x onerror="document.title=\'pwned\'"></script><script>document.title="pwned"</script>'


@dataclass(frozen=True, kw_only=True)
class Settings:
    gate: Path = setting(Path("."), "folder whose files steer the service (see the module docstring)")
    hostile: bool = setting(False, "name the pool and the check with markup")


class OpsApp(Service[Settings]):
    name = "OpsApp"
    version = "1.2.3"

    def start(self) -> None:
        hostile = self.settings.hostile
        self.pool = self.use(ThreadPool(2, name=f"pool {HOSTILE}" if hostile else "pool", queue_size=64))
        self.use(PeriodicTimer(0.05, self.tick, name="ticker"))
        self.health_check(f"gate {HOSTILE}" if hostile else "gate", self.gate_check, timeout=0.5, cache=0.0)

    def tick(self) -> None:
        self.pool.submit(self.task)

    def task(self) -> None:
        gate = self.settings.gate
        if (gate / "fail").exists():
            (gate / "fail").unlink(missing_ok=True)
            raise RuntimeError(f"asked to fail: {HOSTILE if self.settings.hostile else 'the fail file'}")
        while (gate / "hang").exists():
            time.sleep(0.05)

    def gate_check(self) -> object:
        gate = self.settings.gate
        if (gate / "slow").exists():
            time.sleep(30)
        if (gate / "unready").exists():
            return Health.UNHEALTHY, "the unready file exists"
        if (gate / "degraded").exists():
            return Health.DEGRADED, "the degraded file exists"
        return Health.HEALTHY
