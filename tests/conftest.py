"""Shared test helpers. Tests find the shared tools through SERVICEHOST_TOOLS (default ../shared/tools)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("SERVICEHOST_TOOLS", ROOT.parent / "shared" / "tools"))
IN_CI = os.environ.get("CI", "").lower() == "true"
#: ``SERVICEHOST_TEST_SWITCH_INTERVAL=1e-5``: the interpreter switches threads every 10 µs, not 5 ms,
#: so a race that needs an unlucky switch between two lines shows up (.ci/run's race stage).
SWITCH_INTERVAL = os.environ.get("SERVICEHOST_TEST_SWITCH_INTERVAL", "")
if SWITCH_INTERVAL:
    sys.setswitchinterval(float(SWITCH_INTERVAL))


def pytest_report_header() -> list[str]:
    return [f"thread switch interval: {sys.getswitchinterval():g} s"] if SWITCH_INTERVAL else []


@pytest.fixture
def tools() -> Path:
    """The shared tools folder; skips (with how to fix) when it is missing outside CI."""
    if not (TOOLS / "README.md").is_file():
        reason = f"shared tools not found at {TOOLS}: set SERVICEHOST_TOOLS to the folder holding wine-python-env.sh"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return TOOLS
