"""The registry's first filter (``platforms.RUNS_WHERE``) says what each platform's ``ENTRY`` says,
and a start in a terminal imports no platform package but the foreground."""

from __future__ import annotations

import subprocess
import sys

import pytest

from servicehost import platforms


@pytest.mark.parametrize("name", platforms.PLATFORMS)
def test_runs_where_is_what_each_entry_declares(name: str) -> None:
    entry = platforms.entry(name)
    assert platforms.RUNS_WHERE[name] == (entry.os_names, entry.run_markers)


def test_the_registry_lists_every_platform_once() -> None:
    assert set(platforms.RUNS_WHERE) == set(platforms.PLATFORMS)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the markers tried are Linux managers'")
def test_detect_imports_only_the_platform_it_may_run_under() -> None:
    code = (
        "import sys\n"
        "from servicehost import platforms\n"
        "print(platforms.detect({})[0].name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('servicehost.platforms.')))\n"
        "print(platforms.detect({'SUPERVISOR_ENABLED': '1'})[0].name)\n"
        "print(sorted(m.rsplit('.', 1)[-1] for m in sys.modules if m.startswith('servicehost.platforms.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "foreground"
    assert out[1] == str(["servicehost.platforms.entry", "servicehost.platforms.foreground",
                          "servicehost.platforms.once_ready", "servicehost.platforms.signal_inbox"])
    # its marker present: supervisord is imported and asked (it wants more than the marker to say yes)
    assert "supervisord" in out[3] and "systemd" not in out[3] and "windows" not in out[3]
