"""The service the Manager contract suite (test_manager_contract.py) installs under every manager
(a target file, not tests).

It is ready only once the file named by ``$CONTRACT_GATE`` exists, so a test holds it in
``starting`` for as long as it needs, whatever the machine's speed. Each hook logs one line
``contract: <hook> ...``, which the suite reads back through ``servicehost logs`` (the manager's
own log: supervisord's program log, the journal, the Event Log or the service's log file).
``$CONTRACT_MARK`` is logged at start: ``update`` changes it, ``restart`` shows the new value.
While the file ``$CONTRACT_GATE.fail`` exists its start fails (exit 3, START_FAILURE).
Once ready it runs one task on its pool ``contract-pool``, so ``status`` has counters to show.
"""

from __future__ import annotations

import os
from pathlib import Path

from servicehost import Service, StopToken, ThreadPool


class Contract(Service):
    name = "Contract"
    description = "servicehost Manager contract test service"
    ready_on_start = False

    def start(self) -> None:
        self.log.info("contract: started pid=%d mark=%s", os.getpid(), os.environ.get("CONTRACT_MARK", ""))
        if Path(os.environ["CONTRACT_GATE"] + ".fail").exists():
            raise RuntimeError("contract: asked to fail its start")
        self.pool = self.use(ThreadPool(2, name="contract-pool"))

    def run(self, stop: StopToken) -> None:
        gate = Path(os.environ["CONTRACT_GATE"])
        while not gate.exists():
            if stop.wait(0.05):
                return
        self.log.info("contract: ready")
        self.ready()
        self.pool.submit(int)
        stop.wait()

    def pause(self) -> None:
        self.log.info("contract: paused")

    def resume(self) -> None:
        self.log.info("contract: continued")

    def control(self, code: int) -> None:
        self.log.info("contract: control %d", code)

    def reload(self) -> None:
        self.log.info("contract: reloaded")
