"""The Windows start path: what a service process imports on its way to SERVICE_RUNNING.

Under Wine every module costs milliseconds of file access (bench/wine_start.py measures the start),
so the service process imports only what running needs: no manager or install code, no
message-file DLL builder, no foreground platform, no multiprocessing (the ImagePath's python.exe
is already what spawned children run), and pywin32's ``servicemanager`` hosting without
``win32serviceutil`` (nor the win32api, win32con and winerror it imports). The same holds for
``servicehost.compat`` on Windows: each name is the real pywin32 module, through the one door
(``platforms/windows/pywin32.py``), with none of servicehost's core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..conftest import IN_CI, TOOLS
from .wine import NATIVE, ROOT, Wine, start_wine, winpath

LIGHT = ROOT / "tests" / "platforms" / "windows_light_service.py"
TAG = f"{os.getpid() % 100000}"

#: Never on the start path of a service process (manager, install and registration code; the
#: foreground; multiprocessing; pywin32's win32serviceutil and what only it imports).
NOT_ON_THE_START_PATH = (
    "servicehost.manage", "servicehost.platforms.foreground", "servicehost.platforms.windows.manager",
    "servicehost.platforms.windows.message_file", "servicehost.platforms.windows.service_config",
    "servicehost.platforms.windows.security", "servicehost.platforms.windows.credentials", "multiprocessing",
    "win32serviceutil", "win32api", "win32con", "winerror",
)

#: What ``servicehost.compat`` may load of servicehost on Windows: the packages on the way to the door
#: (``_records``: the light NamedTuple the platform entries are made with; stdlib imports only).
COMPAT_DOOR = {"servicehost", "servicehost._lazy", "servicehost._records", "servicehost.compat",
               "servicehost.platforms", "servicehost.platforms.entry", "servicehost.errors",
               "servicehost.platforms.windows", "servicehost.platforms.windows.pywin32"}


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_the_start_path_modules_import_no_manager_install_or_foreground_code():
    loaded = _loaded("import servicehost.platforms.windows.boot, servicehost.platforms.windows.platform")
    assert {"servicehost.platforms.windows.session", "servicehost.platforms.windows.eventlog"} <= loaded
    assert not loaded & set(NOT_ON_THE_START_PATH)


# -- under Wine (or on Windows) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine() -> Wine:
    if not NATIVE and not (TOOLS / "wine-python-env.sh").is_file():
        reason = f"shared tools not found at {TOOLS}: set SERVICEHOST_TOOLS"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return start_wine(TOOLS, IN_CI)


@pytest.mark.real_manager
def test_a_service_process_reaches_running_without_manager_install_or_win32serviceutil_code(wine, tmp_path):
    name, target = f"shlight{TAG}", winpath(LIGHT)
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start", "manual")
        wine.servicehost("start", target, "--name", name)  # returns once RUNNING: start() has run
        loaded = set(json.loads((tmp_path / "modules.json").read_text(encoding="utf-8"))["modules"])
        assert {"servicemanager", "servicehost.platforms.windows.session"} <= loaded  # it ran under the SCM
        assert sorted(loaded & set(NOT_ON_THE_START_PATH)) == []
        wine.servicehost("stop", target, "--name", name)
    finally:
        wine.servicehost("remove", target, "--name", name, check=False)


@pytest.mark.real_manager
def test_compat_on_windows_is_the_real_pywin32_and_loads_none_of_the_core(wine):
    got = wine.script("""
        import json, sys
        from servicehost.compat import servicemanager, win32event, win32service, win32serviceutil
        import win32serviceutil as real
        print(json.dumps([win32serviceutil is real, servicemanager.__name__, win32event.__name__,
                          win32service.__name__, sorted(m for m in sys.modules if m.startswith("servicehost"))]))
    """)
    same, *names, ours = got  # type: ignore[misc]
    assert same and names == ["servicemanager", "win32event", "win32service"]
    assert set(ours) - COMPAT_DOOR == {"servicehost.compat." + m for m in
                                       ("servicemanager", "win32event", "win32service", "win32serviceutil")}


START_CACHE_PROBE = """
import json, os, sys, win32security as s
folder = os.path.join(os.environ["PROGRAMDATA"], "servicehost", "start-cache", sys.argv[1])
out = {"folder": os.path.isdir(folder), "files": sorted(os.listdir(folder)) if os.path.isdir(folder) else []}
if out["folder"]:
    sd = s.GetNamedSecurityInfo(folder, s.SE_FILE_OBJECT, s.DACL_SECURITY_INFORMATION)
    dacl = sd.GetSecurityDescriptorDacl()
    out["aces"] = [s.ConvertSidToStringSid(dacl.GetAce(i)[2]) for i in range(dacl.GetAceCount())]
    out["protected"] = bool(sd.GetSecurityDescriptorControl()[0] & s.SE_DACL_PROTECTED)
    path = os.path.join(folder, "modules.bin")
    out["mtime"] = os.stat(path).st_mtime_ns if os.path.exists(path) else None
print(json.dumps(out))
"""


@pytest.mark.real_manager
def test_the_next_start_runs_its_modules_from_the_start_cache_and_a_changed_one_from_its_file(wine, tmp_path):
    """The start cache (servicehost/_startcache.py) under the real SCM: install makes its folder
    (protected: SYSTEM, Administrators, the service's account); the first start writes it; the next
    start's servicehost modules and target come from it; a changed target is run as it is now."""
    name = f"shcache{TAG}"
    target_file = tmp_path / "light_copy.py"
    target_file.write_text(LIGHT.read_text(encoding="utf-8"), encoding="utf-8")
    tmp_path.chmod(0o755)  # the service's account reads its code (install checks it)
    target, state = winpath(target_file), tmp_path / "state"

    def start_and_stop() -> dict:
        wine.servicehost("start", target, "--name", name)  # returns once RUNNING: start() has run
        wine.servicehost("stop", target, "--name", name)  # the process exits after its cache is written
        return json.loads((state / "modules.json").read_text(encoding="utf-8"))

    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(state), "--start", "manual")
        made = wine.script(START_CACHE_PROBE, name)
        assert made["folder"] and made["files"] == []
        if NATIVE:  # Wine keeps no file DACL (the tools README's "run as another account" row)
            assert made["protected"] and made["aces"][:2] == ["S-1-5-18", "S-1-5-32-544"] and len(made["aces"]) == 3

        first = start_and_stop()
        assert first["served"] == [] and first["edition"] == 1
        written = wine.script(START_CACHE_PROBE, name)
        assert written["files"] == ["modules.bin"]

        second = start_and_stop()
        on_the_way = {"servicehost.cli", "servicehost.host", "servicehost.platforms.windows.session",
                      "light_copy"}
        assert on_the_way <= set(second["served"]), second["served"]
        assert wine.script(START_CACHE_PROBE, name)["mtime"] == written["mtime"]  # held all: not written again

        target_file.write_text(target_file.read_text(encoding="utf-8").replace("EDITION = 1", "EDITION = 22"),
                               encoding="utf-8")
        changed = start_and_stop()
        assert changed["edition"] == 22 and "light_copy" not in changed["served"]
        assert "servicehost.host" in changed["served"]
        assert start_and_stop()["edition"] == 22
    finally:
        wine.servicehost("remove", target, "--name", name, check=False)
    assert wine.script(START_CACHE_PROBE, name)["folder"] is False  # removed with the service
