"""A service for the control-pipe test under the SCM: a pool that finishes a task every 20 ms (its
counters move between two ``status`` calls) and one task blocked in a known function (``threads``
names it)."""

from __future__ import annotations

import logging
import threading

from servicehost import Service, StopToken, ThreadPool

log = logging.getLogger("pipeapp")
GATE = threading.Event()


def stuck_in_a_known_function() -> None:
    GATE.wait(600)  # hang guard only: the test stops the service long before


def small_task(n: int) -> int:
    return n * 2


class Piped(Service):
    name = "Piped"

    def start(self) -> None:
        self.pool = self.use(ThreadPool(3, name="pipepool"))
        self.pool.submit(stuck_in_a_known_function)

    def run(self, stop: StopToken) -> None:
        n = 0
        while not stop.wait(0.02):
            n += 1
            self.pool.submit(small_task, n)

    def stop(self, deadline) -> None:
        GATE.set()
