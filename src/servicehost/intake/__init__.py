"""The durable intake: work that survives ``kill -9`` and power loss.

    from servicehost import Service, Intake
    self.intake = self.use(Intake(self.handle, store=self.settings.store, workers=16))

    from servicehost.intake import open_store          # producers, in this process or any other
    with open_store("sqlite:////var/lib/app/jobs.sqlite3") as store:
        store.submit({"n": 1}, key="customer-7", idempotency_key="order-991")

Layout:
    store.py      the Store protocol (the one door to a database), its records, errors, URLs, open_store
    sqlite.py     the embedded store: one file, one store thread per process group-committing each tick
    schema/       the versioned schemas and their migrations
    component.py  Intake: the component (workers, claims, leases renewed from heartbeats, retries)
    commands.py   ``servicehost jobs NAME stats|list|dead|requeue ID|submit JSON``
Names are imported on first use: importing this package imports no database module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

__all__ = [
    "DeadJob", "Intake", "Job", "JobInfo", "Stats", "Store", "StoreClosed", "StoreError", "StoreFull",
    "StoreTimeout", "StoreUnavailable", "Submission", "backoff", "default_url", "open_store", "periodic_key",
    "redact",
]

_WHERE = {name: ".store" for name in __all__}
_WHERE.update(Intake=".component", default_url=".commands")

__getattr__, _dir = lazy_names(__name__, _WHERE)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .commands import default_url
    from .component import Intake
    from .store import (
        DeadJob, Job, JobInfo, Stats, Store, StoreClosed, StoreError, StoreFull, StoreTimeout, StoreUnavailable,
        Submission, backoff, open_store, periodic_key, redact,
    )
