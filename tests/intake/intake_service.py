"""The service the intake tests run in real processes (``servicehost run tests/intake/intake_service.py``).

Each handler run appends ``S id attempt pid time`` when it starts and ``D id attempt pid time`` just before
it returns to the ``record`` file (O_APPEND: lines from several processes never interleave), so a
test reads who ran what. A payload ``{"exit": N}`` kills the whole service process
(``os._exit``: a poison job), ``{"sleep": S}`` sleeps, ``{"gate": PATH}`` waits for PATH to exist.
With ``--transactional true`` the handler also writes ``(job, attempt, pid)`` into the table
``effects`` of the store's own database, in the transaction that acks the job (the exactly-once
mode; the test creates the table), and ``{"raise_first": true}`` raises after writing on its first
attempt (its write must not land).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicehost import Intake, Service, setting
from servicehost.intake import Job


@dataclass(frozen=True, kw_only=True)
class IntakeTestSettings:
    store: str = setting("", "store URL")
    record: str = setting("", "file each handler run appends its start and end to")
    workers: int = setting(4, "worker threads", min=1, max=64)
    lease: float = setting(2.0, "lease seconds", min=0.1, max=600)
    max_attempts: int = setting(3, "claims before a job is dead-lettered", min=1, max=1000)
    job_hang_timeout: float = setting(0.0, "the intake's own hang timeout (0: never)", min=0, max=3600)
    prefetch: int = setting(-1, "jobs claimed ahead of the free workers (-1: the intake's default)", min=-1, max=1024)
    transactional: bool = setting(False, "write each job's effect in the transaction that acks it")


class IntakeTest(Service[IntakeTestSettings]):
    name = "intake-test"

    def start(self) -> None:
        s = self.settings
        self.fd = os.open(s.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        handler = self.handle_in_transaction if s.transactional else self.handle
        self.intake = self.use(Intake(handler, store=s.store, workers=s.workers, lease=s.lease,
                                      max_attempts=s.max_attempts, hang_timeout=s.job_hang_timeout,
                                      retry_base=0.05, prefetch=None if s.prefetch < 0 else s.prefetch,
                                      transactional=s.transactional))

    def handle_in_transaction(self, job: Job, conn: Any) -> None:
        self.handle(job)
        conn.execute(f"INSERT INTO effects (job, attempt, pid) VALUES ({int(job.id)}, {int(job.attempt)}, {os.getpid()})")
        if isinstance(job.payload, dict) and job.payload.get("raise_first") and job.attempt == 1:
            raise RuntimeError(f"job {job.id}: raised after writing, on its first attempt")

    def handle(self, job: Job) -> None:
        pid = os.getpid()
        os.write(self.fd, f"S {job.id} {job.attempt} {pid} {time.time():.3f}\n".encode())
        p = job.payload
        if isinstance(p, dict):
            if "exit" in p:
                os._exit(int(p["exit"]))
            if "sleep" in p:
                time.sleep(float(p["sleep"]))
            if "gate" in p:
                gate = Path(p["gate"])
                for _ in range(6000):  # a hang guard of 600 s: the test opens the gate long before
                    if gate.exists():
                        break
                    time.sleep(0.1)
        os.write(self.fd, f"D {job.id} {job.attempt} {pid} {time.time():.3f}\n".encode())
