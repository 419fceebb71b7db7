"""Example: a durable job service on the embedded defaults (a SQLite file in the state directory).

Each job's payload names a greeting to write; the handler writes it to ``<state_dir>/out/<id>.txt``
(replacing the file: running a job twice writes the same file, so the handler is idempotent,
as every at-least-once handler must be). Jobs survive ``kill -9`` and power loss: a job is in
the store until its handler has returned and its ack has committed.

    servicehost run examples/jobs.py                                  # Ctrl-C stops it
    servicehost jobs examples/jobs.py submit '{"name": "Ada"}'        # from another terminal
    servicehost jobs examples/jobs.py stats                            # ready, running, delayed, dead

``--store sqlite:////path/to/jobs.sqlite3`` (or ``SERVICEHOST_STORE``) puts the store elsewhere;
any process may submit to it with ``servicehost.intake.open_store``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import servicehost
from servicehost import Intake, Service, setting
from servicehost.intake import Job, default_url


@dataclass(frozen=True, kw_only=True)
class JobsSettings:
    store: str = setting("", "the intake's store URL (sqlite:////abs/path.sqlite3); empty: jobs.sqlite3 in the "
                             "state dir")
    workers: int = setting(4, "worker threads running jobs", min=1, max=1024)
    lease: float = setting(30.0, "seconds a claim holds a job without renewal (renewed while it runs)",
                           min=0.1, max=3600)
    max_attempts: int = setting(5, "claims a job gets before it is dead-lettered", min=1, max=1000)


class Jobs(Service[JobsSettings]):
    """Runs the jobs in its store on ``workers`` threads; writes one greeting file per job."""

    name = "jobs"
    description = "servicehost example: a durable job service (embedded SQLite store)"

    def start(self) -> None:
        self.out = self.state_dir / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        s = self.settings
        self.intake = self.use(Intake(self.handle, store=s.store or default_url(self.state_dir),
                                      workers=s.workers, lease=s.lease, max_attempts=s.max_attempts))

    def handle(self, job: Job) -> None:
        name = job.payload.get("name", "world") if isinstance(job.payload, dict) else str(job.payload)
        path = self.out / f"{job.id}.txt"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"Hello, {name}! (job {job.id}, attempt {job.attempt})\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    servicehost.main(Jobs)
