"""The Windows platform with real parts: Wine's Service Control Manager, the official Windows CPython
3.13 and pywin32 312 (``wine-python-env.sh``), servicehost's own CLI and real service processes.

The pure parts (exit status, the ImagePath, the virtual account's SID, the access evaluation, the
Event Log message file) are checked on every OS first. What Wine's SCM does not implement is tested
as far as Wine shows it (the API call, the registry value); the rest is skipped with a reason that
starts ``wine-lacks:`` and quotes the tools README's row (CI accepts only those skips).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from servicehost import logs, platforms
from servicehost.errors import ExitCode
from servicehost.platforms import windows as win
from servicehost.platforms.base import launch_command

from ..conftest import IN_CI, TOOLS
from .wine import NATIVE, ROOT, Wine, start_wine, winpath

SERVICES = ROOT / "tests" / "platforms" / "windows_services.py"
TAG = f"{os.getpid() % 100000}"


# -- pure parts, every OS ----------------------------------------------------------------------------
def test_exit_status_only_a_crash_or_a_hang_is_a_failure_recovery_restarts():
    # win32 exit code 0: the SCM's failure actions (with FAILURE_ACTIONS_FLAG) never follow
    for code in (ExitCode.OK, ExitCode.STOP_INCOMPLETE, ExitCode.CONFIG_ERROR, ExitCode.START_FAILURE):
        assert win.scm_exit_status(code) == (0, int(code))
    for code in (ExitCode.CRASH, ExitCode.HUNG):
        assert win.scm_exit_status(code) == (1066, int(code))


def test_image_path_runs_the_base_interpreter_with_the_prefix_and_name():
    command = launch_command(r"C:\app dir\svc.py:Svc", interpreter=r"C:\venv\Scripts\python.exe")
    command[0] = r"C:\venv\Scripts\python.exe"
    argv = win.service_command(command + ["--manager", "auto"], name="svc", prefix=r"C:\venv",
                               python=r"C:\Python 313\python.exe", start_cache=r"C:\cache\svc\modules.bin")
    assert argv[:6] == [r"C:\Python 313\python.exe", "-S", "-s", "-P", "-c", win.BOOT]
    assert argv[6:10] == [r"C:\venv", r"C:\cache\svc\modules.bin", "svc", "run"]
    assert argv[-2:] == ["--manager", "windows"] and argv.count("--manager") == 1
    line = win.command_line(argv)
    assert line.startswith('"C:\\Python 313\\python.exe" -S -s -P -c "import sys;')
    assert '"' not in win.BOOT  # survives Windows quoting unchanged


def test_boot_sets_the_prefix_before_site_is_imported():
    assert win.BOOT.index("sys.prefix=") < win.BOOT.index("import site")


def test_boot_marks_the_posix_only_modules_absent_on_windows_before_the_cli_is_imported(monkeypatch):
    assert win.BOOT.index("prepare()") < win.BOOT.index("import run_cli")
    real_posix = sys.modules.get("posix")
    monkeypatch.setitem(sys.modules, "grp", None)  # put back as it was afterwards
    del sys.modules["grp"]
    monkeypatch.setattr(sys, "platform", "linux")
    win.prepare()  # elsewhere: nothing
    assert "grp" not in sys.modules
    monkeypatch.setattr(sys, "platform", "win32")
    win.prepare()
    assert sys.modules["grp"] is None and sys.modules.get("posix") is real_posix  # a loaded module stays
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("grp")


def test_virtual_account_sid_is_derived_from_the_name():
    # NT SERVICE\TrustedInstaller, a SID every Windows shows.
    assert win.virtual_account_sid("TrustedInstaller") == "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
    assert win.virtual_account_sid("trustedinstaller") == win.virtual_account_sid("TrustedInstaller")
    assert not win.needs_password(r"NT SERVICE\x") and not win.needs_password(r"NT AUTHORITY\LocalService")
    assert not win.needs_password("DOMAIN\\gmsa$") and win.needs_password(r".\alice")


def test_access_is_evaluated_in_order_deny_before_allow():
    everyone, me = "S-1-1-0", "S-1-5-80-1"
    aces = [win.Ace(False, win.FILE_READ_DATA, me), win.Ace(True, 0x1F01FF, everyone)]
    assert win.granted_access(aces, [me, everyone]) & win.NEED_READ == win.FILE_EXECUTE
    assert win.granted_access(aces, [everyone]) & win.NEED_READ == win.NEED_READ
    assert win.granted_access([win.Ace(True, 0x1200A9, me, inherit_only=True)], [me]) == 0
    assert win.granted_access(None, [me]) & win.NEED_READ == win.NEED_READ  # NULL DACL


def _parse_message_table(dll: bytes) -> dict[int, str]:
    """Find the resource section of a PE image and decode its RT_MESSAGETABLE."""
    pe = struct.unpack_from("<I", dll, 0x3C)[0]
    assert dll[pe:pe + 4] == b"PE\0\0"
    sections, opt_size = struct.unpack_from("<H", dll, pe + 6)[0], struct.unpack_from("<H", dll, pe + 20)[0]
    rsrc_rva = struct.unpack_from("<I", dll, pe + 24 + 112 + 2 * 8)[0]
    table = pe + 24 + opt_size
    for i in range(sections):
        _name, _vsize, rva, _rsize, raw = struct.unpack_from("<8sIIII", dll, table + 40 * i)
        if rva == rsrc_rva:
            base = raw
    def entry(offset: int) -> tuple[int, int]:
        count = sum(struct.unpack_from("<HH", dll, base + offset + 12))
        assert count == 1
        return struct.unpack_from("<II", dll, base + offset + 16)
    kind, level2 = entry(0)
    assert kind == 11
    _name, level3 = entry(level2 & 0x7FFFFFFF)
    _lang, data = entry(level3 & 0x7FFFFFFF)
    data_rva, size = struct.unpack_from("<II", dll, base + data)
    start = base + data_rva - rsrc_rva
    blob = dll[start:start + size]
    out = {}
    for b in range(struct.unpack_from("<I", blob)[0]):
        low, high, offset = struct.unpack_from("<III", blob, 4 + 12 * b)
        for event_id in range(low, high + 1):
            length, flags = struct.unpack_from("<HH", blob, offset)
            assert flags == 1
            out[event_id] = blob[offset + 4:offset + length].decode("utf-16-le").rstrip("\0")
            offset += length
    return out


def test_a_secret_copy_is_readable_by_system_administrators_and_the_service_alone():
    service = win.virtual_account_sid("svc")
    aces = win.secret_aces(service)
    assert win.granted_access(aces, [service, "S-1-5-80-0", *win.SERVICE_GROUP_SIDS]) == win.FILE_GENERIC_READ
    assert win.granted_access(aces, [win.SYSTEM_SID]) == win.granted_access(aces, ["S-1-5-32-544"]) == 0x1F01FF
    for other in (win.virtual_account_sid("other"), "S-1-5-21-1-2-3-1001"):  # another service, a user
        assert win.granted_access(aces, [other, *win.SERVICE_GROUP_SIDS]) == 0
    assert [a.sid for a in win.secret_aces(win.SYSTEM_SID)] == [win.SYSTEM_SID, "S-1-5-32-544"]  # LocalSystem


def test_a_start_cache_is_writable_by_system_administrators_and_the_service_alone():
    """The start cache is code the service runs: no one else may write it (``_startcache.py``)."""
    service = win.virtual_account_sid("svc")
    aces = win.secret_aces(service, win.FILE_MODIFY)
    assert win.granted_access(aces, [service, *win.SERVICE_GROUP_SIDS]) == win.FILE_MODIFY
    for other in (win.virtual_account_sid("other"), "S-1-5-21-1-2-3-1001", *win.SERVICE_GROUP_SIDS):
        assert win.granted_access(aces, [other, *win.SERVICE_GROUP_SIDS]) == 0


def test_message_file_holds_every_event_id():
    dll = win.resource_dll(win.message_table(win.event_ids()))
    assert len(dll) % 0x200 == 0
    table = _parse_message_table(dll)
    assert set(table) == {0, *logs.EVENTS}
    assert set(table.values()) == {"%1\r\n"}


def test_importing_servicehost_imports_no_pywin32_and_linux_is_not_windows():
    code = ("import sys, servicehost, servicehost.platforms as p; p.detect(); "
            "print(sorted(m for m in sys.modules if m.startswith(('win32', 'pywintypes', 'servicemanager'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=True).stdout
    assert out.strip() == "[]"
    if sys.platform != "win32":
        platform = win.WindowsPlatform()
        assert platform.detect(os.environ) is None and platform.installable(os.environ) is None
        assert list(__import__("servicehost.platforms", fromlist=["PLATFORMS"]).PLATFORMS)[0] == "windows"


def test_service_stdio_keeps_then_logs_and_never_loops(caplog):
    stream = win.ServiceStdio(logs.windows_stdout)
    stream.write("before the host\n")
    assert stream.kept() == "before the host\n"
    with caplog.at_level("INFO", logger="servicehost.stdio"):
        stream.start_logging()
        print("a line", "and more", file=stream)
        stream.write("partial")
        stream.write(" line\n")
    messages = [r.getMessage() for r in caplog.records if r.name == "servicehost.stdio"]
    assert messages == ["stdout: before the host", "stdout: a line and more", "stdout: partial line"]
    assert all(r.event_id == 5312 for r in caplog.records if r.name == "servicehost.stdio")
    stream.write("x" * (2 * stream.KEEP))  # never blocks, never raises


WINDOWS_PACKAGE = ROOT / "src" / "servicehost" / "platforms" / "windows"


def _imports(path: Path) -> list[str]:
    """Every module a file imports, absolute (``from ... import cli`` → ``servicehost.cli``)."""
    package = ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return found


def test_the_package_is_light_and_names_where_each_name_lives():
    # The registry imports the package on every start: it must load none of its modules.
    code = ("import sys, servicehost.platforms.windows as p; "
            "print(sorted(m for m in sys.modules if m.startswith('servicehost.platforms.windows.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout.strip() == "[]"
    modules = set(win.NAMES.values())
    assert modules == {p.stem for p in WINDOWS_PACKAGE.glob("*.py")} - {"__init__"}
    for module in modules:
        exported = importlib.import_module(f"servicehost.platforms.windows.{module}").__all__
        assert {n for n, m in win.NAMES.items() if m == module} == set(exported), module
        assert module not in win.NAMES  # a name never hides a module of the package
    assert win.service_main is importlib.import_module("servicehost.platforms.windows.boot").service_main
    with pytest.raises(AttributeError):
        getattr(win, "not_a_name")
    assert platforms.load("windows").__class__ is win.WindowsPlatform
    assert platforms.entry("windows").platform == "servicehost.platforms.windows.platform:WindowsPlatform"


def test_arrows_no_windows_module_imports_the_cli_and_only_windows_imports_pywin32():
    pywin32_names = ("win32", "pywintypes", "servicemanager", "ntsecuritycon", "winerror", "pythoncom")
    for path in (ROOT / "src" / "servicehost").rglob("*.py"):
        imported = _imports(path)
        if WINDOWS_PACKAGE in path.parents:
            assert not [m for m in imported if m == "servicehost.cli" or m.startswith("servicehost.cli.")], path
        else:
            assert not [m for m in imported if m.startswith(pywin32_names)], path
    # The boot program (the ImagePath's -c) is what hands the CLI's runner to the platform.
    assert "from servicehost.cli import run_cli" in win.BOOT and win.BOOT.endswith("service_main(run_cli)")


def test_compat_reaches_into_no_private_name_of_another_module():
    for path in [*(ROOT / "src" / "servicehost" / "compat").glob("*.py"), *WINDOWS_PACKAGE.glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   for alias in node.names if alias.name.islower()}
        for node in ast.walk(tree):
            # a private module of the file's own package (``from . import _unavailable``) is its own
            if isinstance(node, ast.ImportFrom) and not (node.level == 1 and node.module is None):
                assert not [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")], path
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert not (node.attr.startswith("_") and not node.attr.startswith("__")), (path, node.value.id, node.attr)


def test_each_way_of_not_reaching_windows_logs_its_own_event():
    named = {e.name: e.id for e in logs.EVENTS.values()}
    assert named["notify_failed"] == 5003  # a manager notification failed: the status pump alone
    windows = ["windows_event_log_unavailable", "windows_event_source_absent", "windows_account_groups_unknown",
               "windows_uptime_unknown", "windows_boot_outdated"]
    assert all(5300 <= named[n] < 5400 for n in windows) and len({named[n] for n in windows}) == len(windows)
    uses = {path.name: path.read_text(encoding="utf-8").count("logs.notify_failed(") for path in WINDOWS_PACKAGE.glob("*.py")}
    assert {name: n for name, n in uses.items() if n} == {"session.py": 1}


# -- under Wine --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine() -> Wine:
    if not NATIVE and not (TOOLS / "wine-python-env.sh").is_file():
        reason = f"shared tools not found at {TOOLS}: set SERVICEHOST_TOOLS"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return start_wine(TOOLS, IN_CI)


def _remove(wine: Wine, *names: str) -> None:
    """Stop and delete services whatever state a failed test left them in."""
    wine.script("""
        import json, sys, time, win32service as ws, win32evtlogutil
        scm = ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS)
        for name in sys.argv[1:]:
            try:
                h = ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS)
            except ws.error:
                continue
            try:
                ws.ControlService(h, ws.SERVICE_CONTROL_STOP)
            except ws.error:
                pass
            t0 = time.time()
            while ws.QueryServiceStatus(h)[1] != ws.SERVICE_STOPPED and time.time() - t0 < 30:
                time.sleep(0.1)
            ws.DeleteService(h)
            try:
                win32evtlogutil.RemoveSourceFromRegistry(name)
            except Exception:
                pass
        print(json.dumps(True))
    """, *names)


def _trace(state_dir: Path) -> list[dict]:
    path = state_dir / "trace.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _hooks(records: list[dict]) -> list[str]:
    return [r["hook"] for r in records]


def _field(status: str, name: str) -> str:
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name!r} in:\n{status}")


@pytest.fixture(scope="module")
def traced(wine: Wine, tmp_path_factory) -> Iterator[tuple[str, Path, str]]:
    """The Traced service, installed once (manual start) for the scenarios below."""
    name = f"shtraced{TAG}"
    state = tmp_path_factory.mktemp("traced")
    target = winpath(SERVICES) + ":Traced"
    proc = wine.servicehost(
        "install", target, "--name", name, "--state-dir", winpath(state), "--start", "manual",
        "--display-name", f"servicehost traced {TAG}", "--description", "records its hooks", "--env", "SH_TEST_ENV=hello",
        "--restart-delay", "2")
    yield name, state, target + "\n" + proc.stdout + proc.stderr
    _remove(wine, name)


REGISTRY_PROBE = r"""
import json, sys, winreg, win32api, win32con, win32service as ws
name, ids = sys.argv[1], [int(i) for i in sys.argv[2].split(",")]
scm = ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS)
h = ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS)
cfg = ws.QueryServiceConfig(h)
def values(path):
    out = {}
    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as k:
        for i in range(winreg.QueryInfoKey(k)[1]):
            n, v, _ = winreg.EnumValue(k, i)
            out[n] = v
    return out
base = r"SYSTEM\CurrentControlSet\Services\%s" % name
source = values(r"SYSTEM\CurrentControlSet\Services\EventLog\Application\%s" % name)
rendered = {}
for path in source["EventMessageFile"].split(";"):
    mod = win32api.LoadLibraryEx(path, 0, win32con.LOAD_LIBRARY_AS_DATAFILE)
    for i in ids:
        try:
            rendered[i] = win32api.FormatMessageW(win32con.FORMAT_MESSAGE_FROM_HMODULE | win32con.FORMAT_MESSAGE_ARGUMENT_ARRAY, mod, i, 0, ["hello %d" % i, ""])
        except win32api.error:
            pass
print(json.dumps({"config": list(cfg), "description": ws.QueryServiceConfig2(h, ws.SERVICE_CONFIG_DESCRIPTION),
                  "preshutdown": ws.QueryServiceConfig2(h, ws.SERVICE_CONFIG_PRESHUTDOWN_INFO),
                  "service": values(base), "parameters": values(base + r"\Parameters"), "source": source,
                  "rendered": rendered}, default=str))
"""


@pytest.mark.real_manager
def test_install_registers_the_service_its_options_and_its_event_source(wine, traced):
    name, state, install_output = traced
    ids = [0, 1002, 2005, 5301, max(logs.EVENTS), 0x40001002]  # the last: pywin32's PYS_SERVICE_STARTED
    got = wine.script(REGISTRY_PROBE, name, ",".join(map(str, ids)))
    config, service, parameters = got["config"], got["service"], got["parameters"]
    assert config[1] == 3 and config[8] == f"servicehost traced {TAG}"  # SERVICE_DEMAND_START, display name
    assert config[7] == f"NT SERVICE\\{name}"  # least privilege: the virtual account
    image = config[3]
    assert image.startswith(win.command_line([wine.base_python, "-S", "-s", "-P", "-c", win.BOOT]))
    start_cache = wine.script("import json, os, sys; print(json.dumps(os.path.join(os.environ['PROGRAMDATA'], "
                              "'servicehost', 'start-cache', sys.argv[1], 'modules.bin')))", name)
    assert f" {win.command_line([wine.prefix, start_cache])} {name} run " in image and image.endswith("--manager windows")
    assert got["description"] == "records its hooks"
    assert got["preshutdown"] == (30 + win.PRESHUTDOWN_MARGIN) * 1000  # the stop timeout + margin
    assert service["Environment"] == ["SH_TEST_ENV=hello"]
    assert parameters["WorkingDirectory"] == winpath(state) == parameters["StateDirectory"]
    assert got["source"]["TypesSupported"] == 7
    assert got["source"]["EventMessageFile"].split(";")[0].endswith(rf"servicehost\{name}\messages.dll")
    assert {int(k): v for k, v in got["rendered"].items()} == {
        **{i: f"hello {i}\r\n" for i in ids[:-1]}, 0x40001002: "The hello 1073745922 service has started.\r\n"}
    # Wine stores no failure actions and has no FAILURE_ACTIONS_FLAG: install says so, and goes on.
    assert "does not implement FAILURE_ACTIONS_FLAG (error 124)" in install_output
    assert "does not implement failure actions (error 124): the restart policy was not stored" in install_output


@pytest.mark.real_manager
def test_start_status_pause_continue_control_reload_stop_through_the_cli(wine, traced):
    name, state, _ = traced
    target = winpath(SERVICES) + ":Traced"
    eventlog_at = wine.eventlog_size()
    (state / "trace.jsonl").unlink(missing_ok=True)
    wine.servicehost("start", target, "--name", name, "--arg", "a1", "--arg", "stdio", "--arg", "pool")
    status = wine.status(target, "--name", name).stdout
    assert _field(status, "state") == "running" and _field(status, "pid").isdigit()
    wine.servicehost("pause", target, "--name", name)
    assert _field(wine.status(target, "--name", name).stdout, "state") == "paused"
    wine.servicehost("continue", target, "--name", name)
    wine.servicehost("control", target, "--name", name, "200")
    wine.servicehost("reload", target, "--name", name)
    pid = _field(wine.status(target, "--name", name).stdout, "pid")
    wine.servicehost("restart", target, "--name", name)
    status = wine.status(target, "--name", name).stdout
    assert _field(status, "state") == "running" and _field(status, "pid") != pid
    refused = wine.servicehost("control", target, "--name", name, "127", check=False)
    assert refused.returncode == ExitCode.CONFIG_ERROR and "128 to 255" in refused.stderr
    wine.servicehost("stop", target, "--name", name)
    status = wine.status(target, "--name", name).stdout
    assert _field(status, "state") == "stopped" and _field(status, "last exit") == "0 (OK)"

    records = _trace(state)
    # pause/continue/control/reload run on a control thread; each waited for the SCM's answer.
    assert _hooks(records) == ["start", "stdio-written", "pool", "pause", "resume", "control", "reload", "stop",
                               "start", "stop"]  # restart: a new process, without the start arguments
    assert records[8]["args"] == [] and records[8]["pid"] != records[0]["pid"]
    start = records[0]
    assert start["args"] == ["a1", "stdio", "pool"]
    assert start["env"] == "hello" and start["cwd"] == winpath(state)  # Environment + working directory
    assert start["executable"].lower() == wine.base_python.lower()
    assert records[2]["squares"] == [n * n for n in range(8)]  # a spawn process pool under the SCM
    assert records[2]["executable"].lower() == wine.base_python.lower()
    assert records[5]["code"] == 200
    log_text = (state / "logs" / f"{name}.log").read_text()  # named after the installed name
    tail = wine.servicehost("logs", target, "--name", name).stdout  # Wine: no read-back, so the log file's end
    assert "reporting STOPPED to the SCM: win32 exit code 0" in tail
    assert "stdout: stdio-marker-out" in log_text and "stderr: stdio-marker-err" in log_text
    assert log_text.count("stdout: " + "x" * 1023) == 256  # 256 KiB through stdout, nothing blocked
    assert "#5301" in log_text and "connected to the Service Control Manager" in log_text
    events = wine.eventlog_since(eventlog_at)
    for text in ("servicehost.host: paused", "servicehost.host: resumed", "control code 200 received",
                 "reporting STOPPED to the SCM: win32 exit code 0"):
        assert text in events


POLLER = r"""
import json, sys, time, win32service as ws
name, args = sys.argv[1], sys.argv[2:]
scm = ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS)
h = ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS)
samples = []
def poll(until, guard):
    t0 = time.time()
    while time.time() - t0 < guard:
        st = ws.QueryServiceStatusEx(h)
        samples.append([time.time(), st["CurrentState"], st["CheckPoint"], st["WaitHint"], st["Win32ExitCode"],
                        st["ServiceSpecificExitCode"]])
        if st["CurrentState"] in until:
            return
        time.sleep(0.05)
ws.StartService(h, args)
poll({ws.SERVICE_RUNNING, ws.SERVICE_STOPPED}, 60)
started = len(samples)
stop_at = time.time()
ws.ControlService(h, ws.SERVICE_CONTROL_STOP)
poll({ws.SERVICE_STOPPED}, 120)
print(json.dumps({"samples": samples, "started": started, "stop_at": stop_at}))
"""


def _checkpoint_gaps(samples: list[list[float]], state: int) -> tuple[list[int], float]:
    """Checkpoints seen while in ``state``, and the longest time between two new ones."""
    pending = [s for s in samples if s[1] == state]
    checkpoints, last_change, gap = [], pending[0][0], 0.0
    for t, _, checkpoint, *_ in pending:
        if not checkpoints or checkpoint != checkpoints[-1]:
            gap = max(gap, t - last_change)
            checkpoints.append(checkpoint)
            last_change = t
    return checkpoints, gap


@pytest.mark.real_manager
def test_slow_start_and_slow_drain_report_rising_checkpoints_until_running_and_stopped(wine, traced):
    name, state, _ = traced
    (state / "trace.jsonl").unlink(missing_ok=True)
    got = wine.script(POLLER, name, "slow-start", "slow-stop", timeout=240)
    samples, started, stop_at = got["samples"], got["started"], got["stop_at"]
    start_phase, stop_phase = samples[:started], samples[started:]
    records = _trace(state)
    ready_at = next(r["t"] for r in records if r["hook"] == "ready")

    # Start: START_PENDING with rising checkpoints for the whole 3 s; RUNNING only once ready.
    assert start_phase[-1][1] == 4
    first_running = start_phase[-1][0]
    assert first_running >= ready_at
    checkpoints, gap = _checkpoint_gaps(start_phase, 2)
    assert checkpoints == sorted(checkpoints) and len(checkpoints) >= 3
    assert gap <= win.WAIT_HINT_MS / 1000 and {s[3] for s in start_phase if s[1] == 2} <= {win.WAIT_HINT_MS, 5000}

    # Stop: STOP_PENDING with rising checkpoints for the whole 8 s drain, then STOPPED, exit 0.
    final = stop_phase[-1]
    assert final[1] == 1 and final[4:] == [0, 0]
    checkpoints, gap = _checkpoint_gaps(stop_phase, 3)
    assert checkpoints == sorted(checkpoints) and len(checkpoints) >= 5  # one a second
    assert gap <= win.WAIT_HINT_MS / 1000
    assert final[0] - stop_at >= 8.0
    assert [r.get("step") for r in records if r["hook"] == "draining"] == list(range(16))
    assert _hooks(records)[-1] == "drained"  # nothing was killed before the drain ended


@pytest.mark.real_manager
def test_a_crash_ends_stopped_with_its_exit_code_and_a_requested_stop_never_does(wine, traced):
    name, state, _ = traced
    target = winpath(SERVICES) + ":Traced"
    eventlog_at = wine.eventlog_size()
    wine.servicehost("start", target, "--name", name, "--arg", "crash-in-run")
    wine.script("""
        import json, sys, time, win32service as ws
        h = ws.OpenService(ws.OpenSCManager(None, None, ws.SC_MANAGER_CONNECT), sys.argv[1], ws.SERVICE_QUERY_STATUS)
        t0 = time.time()
        while ws.QueryServiceStatus(h)[1] != ws.SERVICE_STOPPED and time.time() - t0 < 60:
            time.sleep(0.05)
        print(json.dumps(True))
    """, name)
    status = wine.status(target, "--name", name).stdout  # exit 3: not running
    assert _field(status, "state") == "failed" and _field(status, "last exit") == "1 (CRASH)"
    assert _field(status, "win32 exit code") == "1066"

    failed = wine.servicehost("start", target, "--name", name, "--arg", "crash-in-start", check=False)
    assert failed.returncode == ExitCode.START_FAILURE
    assert "stopped while starting (exit code 3 (START_FAILURE))" in failed.stderr
    status = wine.status(target, "--name", name).stdout
    assert _field(status, "last exit") == "3 (START_FAILURE)" and _field(status, "state") == "failed"
    assert _field(status, "win32 exit code") == "0"  # so recovery never restarts a failed start
    events = wine.eventlog_since(eventlog_at)
    assert "asked to fail in run()" in events and "asked to fail in start()" in events  # tracebacks, as errors
    if not NATIVE:
        assert "err:eventlog" in events  # logged as errors


@pytest.mark.real_manager
def test_a_service_that_cannot_even_load_its_config_says_why_in_the_event_log(wine, tmp_path):
    name = f"shbadcfg{TAG}"
    target = winpath(SERVICES) + ":Traced"
    eventlog_at = wine.eventlog_size()
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start", "manual",
                         "--env", "SERVICEHOST_SHUTDOWN_TIMEOUT=soon")
        failed = wine.servicehost("start", target, "--name", name, check=False)
        assert failed.returncode == ExitCode.START_FAILURE
        assert "stopped while starting (exit code 2 (CONFIG_ERROR))" in failed.stderr
        events = wine.eventlog_since(eventlog_at)
        assert "the service could not start (exit code 2)" in events
        assert "SERVICEHOST_SHUTDOWN_TIMEOUT: expected a number" in events  # the CLI's own error line
    finally:
        _remove(wine, name)


#: The boot program servicehost wrote into ImagePaths before the boot program handed the platform its
#: runner (the platform imported the CLI itself).
OLD_BOOT = ("import sys;sys.prefix=sys.exec_prefix=sys.argv.pop(1);import site;site.main();"
            "from servicehost.platforms.windows import service_main;service_main()")

SET_BOOT = """
import json, os, sys, win32service as ws
name, old, new = sys.argv[1], %r, %r
h = ws.OpenService(ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS), name, ws.SERVICE_ALL_ACCESS)
image = ws.QueryServiceConfig(h)[3]
assert new in image, image
start_cache = " " + os.path.join(os.environ["PROGRAMDATA"], "servicehost", "start-cache", name, "modules.bin")
assert start_cache in image, image  # an older ImagePath had no start cache argument either
image = image.replace(new, old).replace(start_cache, "")
ws.ChangeServiceConfig(h, ws.SERVICE_NO_CHANGE, ws.SERVICE_NO_CHANGE, ws.SERVICE_NO_CHANGE, image,
                       None, 0, None, None, None, None)
print(json.dumps(ws.QueryServiceConfig(h)[3]))
"""


@pytest.mark.real_manager
def test_an_image_path_an_older_servicehost_wrote_fails_clearly_until_update_rewrites_it(wine, tmp_path):
    name = f"sholdboot{TAG}"
    target = winpath(SERVICES) + ":Traced"
    install = ("--name", name, "--state-dir", winpath(tmp_path), "--start", "manual")
    try:
        wine.servicehost("install", target, *install)
        assert OLD_BOOT in wine.script(SET_BOOT % (OLD_BOOT, win.BOOT), name)
        eventlog_at = wine.eventlog_size()
        failed = wine.servicehost("start", target, "--name", name, check=False)
        assert failed.returncode == ExitCode.START_FAILURE
        assert "stopped while starting (exit code 2 (CONFIG_ERROR))" in failed.stderr
        events = wine.eventlog_since(eventlog_at)
        assert f"{name}: its ImagePath was written by an older servicehost" in events
        assert f"servicehost update {target} --name {name}" in events.replace("\\\\", "\\")  # Wine's trace doubles \\
        assert _trace(tmp_path) == []  # the service's code never ran

        wine.servicehost("update", target, *install)
        image = wine.script(REGISTRY_PROBE, name, "0")["config"][3]
        assert win.command_line(["-c", win.BOOT]) in image and "service_main()" not in image
        wine.servicehost("start", target, "--name", name)
        wine.servicehost("stop", target, "--name", name)
        assert _hooks(_trace(tmp_path)) == ["start", "stop"]
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_the_service_command_run_by_hand_runs_in_the_foreground_and_says_so(wine, tmp_path):
    """The ImagePath, typed into a console: no SCM calls back, so the host runs in the foreground."""
    command = [wine.base_python, "-m", "servicehost", "run", winpath(SERVICES) + ":Brief", "--state-dir", winpath(tmp_path)]
    argv = win.service_command(command, name=f"shbyhand{TAG}", prefix=wine.prefix, python=wine.base_python,
                               start_cache=winpath(tmp_path / "modules.bin"))
    proc = wine.py(*argv[1:], check=True)
    out = proc.stdout + proc.stderr
    assert "not started by the Service Control Manager (started from a console, not by the SCM)" in out
    assert "brief run under" in out and "stopped: exit code 0 (OK)" in out


@pytest.mark.real_manager
def test_sixteen_threads_serve_tcp_clients_from_the_linux_side(wine, tmp_path):
    name = f"shtcp{TAG}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = winpath(SERVICES) + ":ThreadedTcp"
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start", "manual",
                         "--port", str(port))
        wine.servicehost("start", target, "--name", name)

        def ping(n: int) -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(f"ping {n}\n".encode())
                return conn.makefile("r").readline().strip()

        with ThreadPoolExecutor(48) as clients:
            answers = list(clients.map(ping, range(48)))
        assert sorted(int(a.split()[1]) for a in answers) == list(range(48))
        threads = {a.split()[2] for a in answers}
        assert threads == {f"tcp-{i}" for i in range(16)}
        wine.servicehost("stop", target, "--name", name)
        status = wine.status(target, "--name", name).stdout
        assert _field(status, "state") == "stopped" and _field(status, "last exit") == "0 (OK)"
        wine.servicehost("remove", target, "--name", name)
        left = wine.script("""
            import json, os, sys, winreg
            try:
                winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, "SYSTEM\\\\CurrentControlSet\\\\Services\\\\EventLog\\\\Application\\\\" + sys.argv[1])
                source = True
            except OSError:
                source = False
            dll = os.path.join(os.environ["PROGRAMDATA"], "servicehost", sys.argv[1], "messages.dll")
            print(json.dumps([source, os.path.exists(dll)]))
        """, name)
        assert left == [False, False]  # remove took the Event Log source and its message file
        assert _field(wine.status(target, "--name", name).stdout, "state") == "not-installed"
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_stop_stops_the_dependents_first(wine, tmp_path):
    base, dependent = f"shdepa{TAG}", f"shdepb{TAG}"
    target = winpath(SERVICES) + ":Traced"
    states = {n: tmp_path / n for n in (base, dependent)}
    try:
        wine.servicehost("install", target, "--name", base, "--state-dir", winpath(states[base]), "--start", "manual")
        wine.servicehost("install", target, "--name", dependent, "--state-dir", winpath(states[dependent]),
                         "--start", "manual", "--depends", base)
        deps = wine.script("""
            import json, sys, winreg
            k = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, "SYSTEM\\\\CurrentControlSet\\\\Services\\\\" + sys.argv[1])
            print(json.dumps(winreg.QueryValueEx(k, "DependOnService")[0]))
        """, dependent)
        assert deps == [base]
        wine.servicehost("start", target, "--name", base)
        wine.servicehost("start", target, "--name", dependent)  # Wine does not start dependencies itself
        wine.servicehost("stop", target, "--name", base)
        stops = {n: next(r["t"] for r in _trace(s) if r["hook"] == "stop") for n, s in states.items()}
        assert stops[dependent] < stops[base]
        for n in states:
            assert _field(wine.status(target, "--name", n).stdout, "state") == "stopped"
    finally:
        _remove(wine, dependent, base)


SECRET_PROBE = r"""
import hashlib, json, os, sys, winreg
name = sys.argv[1]
def tree(path):
    out = []
    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path)
    except OSError:
        return out
    with key:
        subkeys, values, _ = winreg.QueryInfoKey(key)
        out += [[path, *winreg.EnumValue(key, i)[:2]] for i in range(values)]
        for i in range(subkeys):
            out += tree(path + "\\" + winreg.EnumKey(key, i))
    return out
base = r"SYSTEM\CurrentControlSet\Services" + "\\" + name
folder = os.path.join(os.environ["PROGRAMDATA"], "servicehost", "credentials", name)
copy = os.path.join(folder, "TOKEN")
values = tree(base) + tree(r"SYSTEM\CurrentControlSet\Services\EventLog\Application" + "\\" + name)
env = [v for p, n, v in values if p == base and n == "Environment"]
digest = None
if os.path.exists(copy):
    with open(copy, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
print(json.dumps({"environment": env[0] if env else None, "values": values, "copy": copy, "sha256": digest,
                  "files": sorted(os.listdir(folder)) if os.path.isdir(folder) else None}, default=str))
"""


def _sha256(data: str) -> str:
    import hashlib

    return hashlib.sha256(data.encode()).hexdigest()


@pytest.mark.real_manager
def test_a_secret_file_reaches_the_service_as_name_file_and_the_registry_holds_only_its_path(wine, tmp_path):
    import uuid

    name = f"shsecret{TAG}"
    target = winpath(SERVICES) + ":Traced"
    state = tmp_path / "state"
    secret, newer = f"s3cr3t-{uuid.uuid4().hex}", f"n3w-{uuid.uuid4().hex}"
    (tmp_path / "token.txt").write_text(secret)
    (tmp_path / "token2.txt").write_text(newer)
    common = ["--name", name, "--state-dir", winpath(state), "--start", "manual", "--env", "MODE=@@fast"]
    offset = wine.eventlog_size()
    try:
        # an @file that cannot be read: one line, exit 2, nothing registered
        bad = wine.servicehost("install", target, *common, "--env", f"TOKEN=@{winpath(tmp_path / 'absent')}",
                               check=False)
        assert bad.returncode == ExitCode.CONFIG_ERROR and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "expected a readable regular file" in bad.stderr
        assert _field(wine.status(target, "--name", name).stdout, "state") == "not-installed"

        wine.servicehost("install", target, *common, "--env", f"TOKEN=@{winpath(tmp_path / 'token.txt')}")
        got = wine.script(SECRET_PROBE, name)
        copy = got["copy"]
        assert got["environment"] == ["MODE=@fast", f"TOKEN_FILE={copy}"]  # the path, never the secret
        assert got["sha256"] == _sha256(secret) and got["files"] == ["TOKEN"]
        assert secret not in json.dumps(got["values"])
        wine.servicehost("start", target, "--name", name)
        wine.servicehost("stop", target, "--name", name)
        (started,) = [r for r in _trace(state) if r["hook"] == "start"]
        assert started["secret"] == {"TOKEN_FILE": copy, "TOKEN": None, "MODE": "@fast", "sha256": _sha256(secret)}
        assert not [str(p) for p in state.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert secret not in wine.eventlog_since(offset)

        # update with a new file replaces the copy; the next start reads the new secret
        wine.servicehost("update", target, *common, "--env", f"TOKEN=@{winpath(tmp_path / 'token2.txt')}")
        got = wine.script(SECRET_PROBE, name)
        assert (got["sha256"], got["files"]) == (_sha256(newer), ["TOKEN"])
        wine.servicehost("start", target, "--name", name)
        wine.servicehost("stop", target, "--name", name)
        assert [r for r in _trace(state) if r["hook"] == "start"][-1]["secret"]["sha256"] == _sha256(newer)

        # update by name of something else, once the secret's file is gone: its copy stays
        (tmp_path / "token2.txt").unlink()
        changed = wine.servicehost("update", name, "--env", "MODE=@@slow")
        assert changed.stdout.replace("\r\n", "\n").splitlines()[0] == "changed: --env MODE: set -> set to a new value"
        got = wine.script(SECRET_PROBE, name)
        assert (got["sha256"], got["files"], got["environment"]) == (_sha256(newer), ["TOKEN"],
                                                                     ["MODE=@slow", f"TOKEN_FILE={copy}"])

        wine.servicehost("remove", target, "--name", name)
        assert wine.script(SECRET_PROBE, name)["files"] is None  # remove took the copies with it
    finally:
        _remove(wine, name)


SECRET_ACL_PROBE = r"""
import json, os, sys, win32security as s
folder = os.path.join(os.environ["PROGRAMDATA"], "servicehost", "credentials", sys.argv[1])
out = {}
for path in (folder, os.path.join(folder, "TOKEN")):
    sd = s.GetNamedSecurityInfo(path, s.SE_FILE_OBJECT, s.DACL_SECURITY_INFORMATION)
    dacl = sd.GetSecurityDescriptorDacl()
    aces = [dacl.GetAce(i) for i in range(dacl.GetAceCount())]
    out[os.path.basename(path)] = {
        "protected": bool(sd.GetSecurityDescriptorControl()[0] & s.SE_DACL_PROTECTED),
        "aces": sorted([a[0][0], a[0][1], a[1] & 0xFFFFFFFF, s.ConvertSidToStringSid(a[2])] for a in aces)}
print(json.dumps(out))
"""


@pytest.mark.real_manager
def test_a_secret_copy_has_a_protected_dacl_for_system_administrators_and_the_service(wine, tmp_path):
    _wine_lacks("run as another account", "services run as the Wine user, and Wine keeps no file DACL "
                "(SetNamedSecurityInfo succeeds; GetNamedSecurityInfo shows the Unix mode)")
    name = f"shsecacl{TAG}"
    target = winpath(SERVICES) + ":Traced"
    (tmp_path / "token.txt").write_text("acl-secret")
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path / "state"),
                         "--start", "manual", "--env", f"TOKEN=@{winpath(tmp_path / 'token.txt')}")
        got = wine.script(SECRET_ACL_PROBE, name)
        service = win.virtual_account_sid(name)
        for entry, flags in ((name, 3), ("TOKEN", 0)):  # the folder's ACEs are inherited by its files (OI|CI)
            assert got[entry]["protected"]
            assert got[entry]["aces"] == sorted([[0, flags, 0x1F01FF, win.SYSTEM_SID], [0, flags, 0x1F01FF, "S-1-5-32-544"],
                                                 [0, flags, win.FILE_GENERIC_READ, service]])
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_a_service_in_a_venv_runs_from_the_venv_alone(wine, tmp_path):
    """The ImagePath runs the base python.exe with the venv as prefix: the venv's site-packages (and
    its .pth files: pywin32's DLL path) are used, the base site-packages are not."""
    name = f"shvenv{TAG}"
    target = winpath(SERVICES) + ":Traced"
    state = tmp_path / "state"
    if NATIVE:  # the Windows workflow runs the tests from a real venv: install from it
        assert sys.prefix != sys.base_prefix, "run the Windows tests from a venv"
        venv, site = Path(sys.prefix), Path(sys.prefix) / "Lib" / "site-packages"
        install = lambda *args: wine.servicehost(*args)
    else:
        venv = tmp_path / "venv"
        site = venv / "Lib" / "site-packages"
        site.mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text("home = C:\\Python313\ninclude-system-site-packages = false\n")
        wheel = next(Path(wine.env["WINPY_CACHE"], "dl").glob("pywin32-*-win_amd64.whl"))
        with zipfile.ZipFile(wheel) as whl:  # what pip does with a wheel, minus the scripts
            whl.extractall(site)
        (site / "servicehost.pth").write_text(winpath(ROOT / "src") + "\n")
        # The embeddable distribution has no venv launcher: run the base interpreter as the venv's
        # python.exe would, with the venv as its prefix (BOOT does the same for the service).
        installer = ("import sys;sys.prefix=sys.exec_prefix=sys.argv.pop(1);import site;site.main();"
                     "from servicehost.cli import main;main()")
        install = lambda *args: wine.py("-S", "-s", "-c", installer, winpath(venv), *args, check=True)
    try:
        install("install", target, "--name", name, "--state-dir", winpath(state), "--start", "manual")
        wine.servicehost("start", target, "--name", name)
        wine.servicehost("stop", target, "--name", name)
        start = _trace(state)[0]
        assert start["prefix"].lower() == winpath(venv).lower()
        assert start["pywin32"].lower().startswith(winpath(site).lower())
        base_site = str(Path(wine.base_python).parent / "Lib" / "site-packages").lower()
        assert not any(p.lower().startswith(base_site) for p in start["path"])
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_install_refuses_code_the_service_account_cannot_read(wine, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    (secret / "svc.py").write_text(SERVICES.read_text())
    secret.chmod(0o700)
    name = f"shsecret{TAG}"
    proc = wine.servicehost("install", winpath(secret / "svc.py") + ":Traced", "--name", name,
                            "--state-dir", winpath(tmp_path / "state"), check=False)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert f"NT SERVICE\\{name} cannot read {winpath(secret)}" in proc.stderr
    assert "icacls" in proc.stderr and "/grant" in proc.stderr
    status = wine.status(winpath(SERVICES) + ":Traced", "--name", name).stdout
    assert _field(status, "state") == "not-installed"


@pytest.mark.real_manager
def test_named_account_password_comes_from_stdin_and_lands_nowhere(wine, tmp_path):
    name, password = f"shacct{TAG}", f"pw-{TAG}-never-stored"
    target = winpath(SERVICES) + ":Traced"
    refused = wine.servicehost("install", target, "--name", name, "--password", password, check=False)
    assert refused.returncode == ExitCode.CONFIG_ERROR and "--password-stdin" in refused.stderr
    assert password not in refused.stderr  # refused with the reason and the way, never repeated
    try:
        proc = wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path / "state"),
                                "--start", "manual", "--username", "root", "--password-stdin", input=password + "\n")
        got = wine.script(REGISTRY_PROBE, name, "0")
        assert got["config"][7] == "root"
        written = json.dumps(got) + proc.stdout + proc.stderr + "".join(
            p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
        assert password not in written
        status = wine.status(target, "--name", name).stdout
        assert password not in status and _field(status, "account") == "root"
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_delayed_start_is_refused_clearly_where_the_scm_lacks_it(wine, tmp_path):
    name = f"shdelay{TAG}"
    target = winpath(SERVICES) + ":Traced"
    try:
        proc = wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start",
                                "delayed", check=False)
        if not NATIVE:  # Wine: DELAYED_AUTO_START_INFO is error 124
            assert proc.returncode == ExitCode.CONFIG_ERROR
            assert "does not implement delayed auto-start" in proc.stderr and "--start auto" in proc.stderr
            status = wine.status(target, "--name", name).stdout
            assert _field(status, "state") == "not-installed"  # rolled back
        else:
            assert _field(wine.status(target, "--name", name).stdout, "start mode") == "delayed"
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_install_again_updates_in_place(wine, traced):
    """pywin32's install falls through to update for an existing service; so does servicehost's."""
    name, state, _ = traced
    proc = wine.servicehost(
        "install", winpath(SERVICES) + ":Traced", "--name", name, "--state-dir", winpath(state), "--start", "manual",
        "--display-name", f"servicehost traced {TAG}", "--description", "changed in place", "--env", "SH_TEST_ENV=again")
    assert f"{name} is already installed: updating it instead" in proc.stderr
    got = wine.script(REGISTRY_PROBE, name, "0")
    assert got["description"] == "changed in place" and got["service"]["Environment"] == ["SH_TEST_ENV=again"]
    assert got["config"][7] == f"NT SERVICE\\{name}"  # the account is kept


# -- what Wine's SCM does not implement: run on a real Windows (.github/workflows/windows.yml) ---------
def _wine_lacks(row: str, what: str) -> None:
    """Skip under Wine, quoting the tools README row the skip rests on (CI checks the quote)."""
    if not NATIVE:
        pytest.skip(f"wine-lacks: {row} — {what}; the Windows workflow runs this on a real SCM")


@pytest.mark.real_manager
def test_delayed_start_is_stored(wine, tmp_path):
    _wine_lacks("`--startup delayed`", "DELAYED_AUTO_START_INFO is error 124 under Wine")
    name = f"shdelay2{TAG}"
    target = winpath(SERVICES) + ":Traced"
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start", "delayed")
        assert _field(wine.status(target, "--name", name).stdout, "start mode") == "delayed"
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_recovery_restarts_a_crashed_service(wine, tmp_path):
    _wine_lacks("failure actions / restart after crash", "nothing is stored and a crashed service stays down")
    name = f"shrecover{TAG}"
    target = winpath(SERVICES) + ":Traced"
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start", "manual",
                         "--restart-delay", "1")
        actions = wine.script("""
            import json, sys, win32service as ws
            h = ws.OpenService(ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS), sys.argv[1], ws.SERVICE_ALL_ACCESS)
            print(json.dumps([ws.QueryServiceConfig2(h, ws.SERVICE_CONFIG_FAILURE_ACTIONS),
                              ws.QueryServiceConfig2(h, ws.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG)], default=str))
        """, name)
        # a restart after 1 s, doubling per failure in a row up to 60 s; the count resets after 60 + 60 s
        assert actions[0]["ResetPeriod"] == 120 and actions[1]
        assert [tuple(a) for a in actions[0]["Actions"]] == [(1, ms) for ms in (1000, 2000, 4000, 8000, 16000, 32000, 60000)]
        wine.servicehost("start", target, "--name", name, "--arg", "crash-in-run")
        deadline = time.monotonic() + 60
        while _hooks(_trace(tmp_path)).count("start") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        starts = [r for r in _trace(tmp_path) if r["hook"] == "start"]
        assert len(starts) >= 2 and starts[1]["pid"] != starts[0]["pid"]  # the SCM restarted it
    finally:
        _remove(wine, name)


@pytest.mark.real_manager
def test_event_log_records_read_back_with_their_ids(wine, traced):
    _wine_lacks("Event Log", "ReadEventLog sees 0 records; the text is checked through the harness capture")
    name, _, _ = traced
    target = winpath(SERVICES) + ":Traced"
    wine.servicehost("start", target, "--name", name)
    wine.servicehost("stop", target, "--name", name)
    events = wine.eventlog_since(0)
    assert f"{name} 5301 4 " in events and f"{name} 1005 4 " in events  # ids, information type


@pytest.mark.real_manager
def test_the_service_runs_as_its_account_with_the_logon_right(wine, tmp_path):
    _wine_lacks("run as another account", "the account is stored, not used; LsaEnumerateAccountRights fails")
    user, password = f"shuser{TAG}", f"Pw-{TAG}-{os.urandom(6).hex()}!"
    name = f"shasuser{TAG}"
    target = winpath(SERVICES) + ":Traced"
    wine.script("""
        import json, sys, win32net
        win32net.NetUserAdd(None, 1, {"name": sys.argv[1], "password": sys.argv[2], "priv": 1, "flags": 1})
        print(json.dumps(True))
    """, user, password)
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start", "manual",
                         "--username", f".\\{user}", input=password + "\n")
        wine.servicehost("start", target, "--name", name)
        wine.servicehost("stop", target, "--name", name)
        assert _trace(tmp_path)[0]["user"].lower() == user.lower()
        rights = wine.script("""
            import json, sys, win32security as s
            sid = s.LookupAccountName(None, sys.argv[1])[0]
            print(json.dumps(list(s.LsaEnumerateAccountRights(s.LsaOpenPolicy(None, s.POLICY_ALL_ACCESS), sid))))
        """, user)
        assert "SeServiceLogonRight" in rights
    finally:
        _remove(wine, name)
        wine.script("import json, sys, win32net; win32net.NetUserDel(None, sys.argv[1]); print(json.dumps(True))", user)


@pytest.mark.real_manager
def test_the_scm_starts_dependencies_first(wine, tmp_path):
    _wine_lacks("dependencies", "stored, but neither started nor enforced")
    base, dependent = f"shdep2a{TAG}", f"shdep2b{TAG}"
    target = winpath(SERVICES) + ":Traced"
    try:
        wine.servicehost("install", target, "--name", base, "--state-dir", winpath(tmp_path / "a"), "--start", "manual")
        wine.servicehost("install", target, "--name", dependent, "--state-dir", winpath(tmp_path / "b"),
                         "--start", "manual", "--depends", base)
        wine.servicehost("start", target, "--name", dependent)
        assert _field(wine.status(target, "--name", base).stdout, "state") == "running"
    finally:
        _remove(wine, dependent, base)


# -- the Windows workflow (it runs elsewhere: its syntax and shape are checked here) ----------------
WORKFLOW = ROOT / ".github" / "workflows" / "windows.yml"


def _yaml_shape(text: str) -> dict[str, object]:
    """A structural check of the YAML subset workflows use, for when PyYAML is not installed: no
    tabs, indentation in steps of two, every line a ``key: value``, a ``- `` item or a block-scalar
    line, block scalars only after ``|``. Returns the top-level keys and the run lines."""
    top: dict[str, object] = {}
    runs: list[str] = []
    block_indent = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert "\t" not in line, f"line {number}: a tab"
        indent = len(line) - len(line.lstrip(" "))
        if block_indent is not None and indent >= block_indent:
            runs.append(line.strip())
            continue
        block_indent = None
        assert indent % 2 == 0, f"line {number}: indentation {indent} is not a multiple of two"
        body = line.strip().removeprefix("- ")
        key, sep, value = body.partition(":")
        assert sep and key and (value == "" or value.startswith(" ")), f"line {number}: not 'key: value': {line!r}"
        if indent == 0:
            top[key] = value.strip()
        if value.strip() == "|":
            block_indent = indent + 2
        elif key.strip() == "run":
            runs.append(value.strip())
    return {"top": top, "runs": runs}


def test_the_windows_workflow_is_valid_yaml_and_runs_these_tests_on_windows():
    text = WORKFLOW.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        doc = yaml.safe_load(text)
        job = doc["jobs"]["scm"]
        assert job["runs-on"].startswith("windows") and True in doc  # `on:` parses as the boolean True
        runs = [step.get("run", "") for step in job["steps"]]
    else:
        shape = _yaml_shape(text)
        assert {"name", "on", "jobs", "permissions"} <= set(shape["top"])  # type: ignore[arg-type]
        assert "runs-on: windows-latest" in text
        runs = shape["runs"]  # type: ignore[assignment]
    tests = [r for r in runs if "pytest" in r]
    assert tests and "tests/platforms/test_windows_wine.py" in tests[0] and "tests/compat" in tests[0]
    assert any("pip install -e" in r for r in runs)
    assert _yaml_shape(text)["runs"]  # the fallback accepts the real file too
