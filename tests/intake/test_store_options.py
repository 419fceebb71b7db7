"""A store's own options (its URL's query, or keywords to ``open_store``) are checked when it is
opened, the same way by every store (``store.checked_store_options``): a NaN timeout or poll, an
infinite busy timeout, a checkpoint interval of 0 (a store thread that never sleeps) or a file mode
past 0o777 is a StoreError naming the store and the option, and nothing is created. Before, a NaN
was taken (NaN > 0 is false, and so was the old check's NaN <= 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servicehost.intake.store import StoreError, open_store

COMMON: list[tuple[str, str]] = [
    ("timeout", "nan"), ("timeout", "0"), ("timeout", "-1"), ("timeout", "inf"), ("poll", "nan"), ("poll", "0"),
    ("max_attempts", "0"), ("max_attempts", "99999999999"), ("idempotency_retention", "-1"),
    ("idempotency_retention", "nan"), ("max_payload_bytes", "0"), ("max_payload_bytes", "-5"),
]
SQLITE_ONLY = [("busy_timeout", "inf"), ("busy_timeout", "-1"), ("checkpoint_interval", "0"),
               ("checkpoint_interval", "nan"), ("checkpoint_bytes", "0"), ("file_mode", "7777"), ("file_mode", "1000")]
POSTGRES_ONLY = [("reap_interval", "0"), ("reap_interval", "nan"), ("vacuum", "-1")]


@pytest.mark.parametrize("option, value", COMMON + SQLITE_ONLY)
def test_a_bad_sqlite_option_is_refused_naming_it_and_nothing_is_created(tmp_path: Path, option: str, value: str) -> None:
    path = tmp_path / "jobs.sqlite3"
    with pytest.raises(StoreError, match=f"{option} must be") as refused:
        open_store(f"sqlite:///{path}?{option}={value}")
    assert str(path) in str(refused.value)
    assert not path.exists()


@pytest.mark.parametrize("option, value", COMMON + POSTGRES_ONLY)
def test_a_bad_postgresql_option_is_refused_naming_it(request: pytest.FixtureRequest, option: str, value: str) -> None:
    cluster: Any = request.getfixturevalue("pg_cluster")
    url = cluster.url(schema=cluster.fresh_schema())
    with pytest.raises(StoreError, match=f"{option} must be"):
        open_store(f"{url}&{option}={value}")


def test_the_options_at_their_edges_are_taken(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/jobs.sqlite3?timeout=0.5&poll=0.001&busy_timeout=0&max_attempts=2147483647"
                    "&idempotency_retention=0&file_mode=0600&checkpoint_interval=0.01") as store:
        assert store.submit({"n": 1}) == 1
