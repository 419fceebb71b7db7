"""Shared test helpers. Tests find the shared tools through SERVICEHOST_TOOLS (default ../shared/tools)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("SERVICEHOST_TOOLS", ROOT.parent / "shared" / "tools"))
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def tools() -> Path:
    """The shared tools folder; skips (with how to fix) when it is missing outside CI."""
    if not (TOOLS / "README.md").is_file():
        reason = f"shared tools not found at {TOOLS}: set SERVICEHOST_TOOLS to the folder holding wine-python-env.sh"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return TOOLS
