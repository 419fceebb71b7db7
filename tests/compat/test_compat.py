"""servicehost.compat on Linux: servicehost's own win32event, servicemanager, win32service and
win32serviceutil — real threads, a real Host, real processes and signals — and its constants
checked against the real pywin32 under Wine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from servicehost.errors import ExitCode
from servicehost.host import Host

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="on Windows servicehost.compat is pywin32 itself")

from servicehost.compat import (
    servicemanager,
    win32event,
    win32service,
    win32serviceutil,
)

from ..conftest import IN_CI, TOOLS
from ..platforms.wine import ROOT, start_wine

ws = win32service


# -- win32event -------------------------------------------------------------------------------------
def test_auto_reset_event_releases_one_wait_then_resets():
    event = win32event.CreateEvent(None, 0, 0, None)
    assert win32event.WaitForSingleObject(event, 0) == win32event.WAIT_TIMEOUT
    win32event.SetEvent(event)
    assert win32event.WaitForSingleObject(event, 0) == win32event.WAIT_OBJECT_0
    assert win32event.WaitForSingleObject(event, 10) == win32event.WAIT_TIMEOUT  # reset by the wait


def test_manual_reset_event_stays_set_until_reset():
    event = win32event.CreateEvent(None, True, True, None)
    assert win32event.WaitForSingleObject(event, 0) == win32event.WaitForSingleObject(event, 0) == 0
    win32event.ResetEvent(event)
    assert win32event.WaitForSingleObject(event, 0) == win32event.WAIT_TIMEOUT


def test_infinite_wait_wakes_on_set_from_another_thread():
    event = win32event.CreateEvent(None, 0, 0, None)
    threading.Timer(0.05, win32event.SetEvent, (event,)).start()
    assert win32event.WaitForSingleObject(event, win32event.INFINITE) == win32event.WAIT_OBJECT_0


def test_wait_for_multiple_objects_any_and_all():
    a, b = win32event.CreateEvent(None, 0, 0, None), win32event.CreateEvent(None, 1, 0, None)
    assert win32event.WaitForMultipleObjects([a, b], False, 10) == win32event.WAIT_TIMEOUT
    win32event.SetEvent(b)
    assert win32event.WaitForMultipleObjects([a, b], False, 0) == win32event.WAIT_OBJECT_0 + 1
    assert win32event.WaitForMultipleObjects([a, b], True, 10) == win32event.WAIT_TIMEOUT  # a is not set
    win32event.SetEvent(a)
    assert win32event.WaitForMultipleObjects([a, b], True, 0) == win32event.WAIT_OBJECT_0
    assert win32event.WaitForSingleObject(a, 0) == win32event.WAIT_TIMEOUT  # auto-reset by the wait-all
    assert win32event.WaitForSingleObject(b, 0) == win32event.WAIT_OBJECT_0  # manual: still set


def test_a_closed_handle_is_an_error():
    event = win32event.CreateEvent(None, 0, 0, None)
    event.Close()
    with pytest.raises(win32event.error) as info:
        win32event.SetEvent(event)
    assert info.value.winerror == 6


# -- servicemanager ---------------------------------------------------------------------------------
def test_log_msg_renders_pywin32s_messages_as_named_events(caplog):
    servicemanager.SetEventSourceName("Demo")
    with caplog.at_level("INFO", logger="servicehost.compat"):
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE, servicemanager.PYS_SERVICE_STARTED, ("Demo", ""))
        servicemanager.LogWarningMsg("careful")
        servicemanager.LogErrorMsg("broken")
    got = [(r.levelname, r.event_id, r.getMessage()) for r in caplog.records]
    assert got == [("INFO", 5320, "Demo: The Demo service has started."), ("WARNING", 5321, "Demo: careful"),
                   ("ERROR", 5322, "Demo: broken")]
    with pytest.raises(TypeError):
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE, 1, "not a sequence")


# -- ServiceFramework on a real Host ---------------------------------------------------------------
class Recorder(win32serviceutil.ServiceFramework):
    _svc_name_ = "Recorder"
    _svc_display_name_ = "Recorder"

    def __init__(self, args):
        super().__init__(args)
        self.calls = [("__init__", tuple(args))]
        self.stop_event = win32event.CreateEvent(None, 0, 0, None)
        Recorder.last = self

    def GetAcceptedControls(self):
        return super().GetAcceptedControls() | ws.SERVICE_ACCEPT_PARAMCHANGE

    def SvcDoRun(self):
        self.calls.append(("SvcDoRun",))
        win32event.WaitForSingleObject(self.stop_event, win32event.INFINITE)

    def SvcStop(self):
        self.calls.append(("SvcStop",))
        self.ReportServiceStatus(ws.SERVICE_STOP_PENDING)
        win32event.SetEvent(self.stop_event)

    def SvcPause(self):
        self.calls.append(("SvcPause",))
        self.ReportServiceStatus(ws.SERVICE_PAUSED)

    def SvcContinue(self):
        self.calls.append(("SvcContinue",))
        self.ReportServiceStatus(ws.SERVICE_RUNNING)

    def SvcShutdown(self):
        self.calls.append(("SvcShutdown",))

    def SvcOtherEx(self, control, event_type, data):
        self.calls.append(("SvcOtherEx", control, event_type, data))


@pytest.fixture
def hosts():
    """Run FrameworkServices on real Hosts; whatever a test leaves running is stopped after it."""
    started: list[tuple[Host, threading.Thread]] = []

    def run(service: win32serviceutil.FrameworkService) -> tuple[Host, threading.Thread, list]:
        host = Host([service])
        codes: list = []
        thread = threading.Thread(target=lambda: codes.append(host.run()), daemon=True)
        thread.start()
        started.append((host, thread))
        assert host.lifecycle.wait_for({host.state.RUNNING, host.state.FAILED, host.state.STOPPED}, 30)
        return host, thread, codes

    yield run
    for host, thread in started:
        host.request_stop("test over")
        thread.join(30)


def test_controls_reach_the_hooks_in_order_and_the_stop_is_clean(hosts):
    service = win32serviceutil.FrameworkService(Recorder, ["a1"])
    host, thread, codes = hosts(service)
    assert service.status[1] == ws.SERVICE_RUNNING  # SvcRun reported RUNNING: that is "ready"
    assert servicemanager.RunningAsService()
    host.pause()
    host.resume()
    host.control(200)
    host.reload()
    host.request_stop("test")
    thread.join(30)
    assert codes == [ExitCode.OK]
    assert Recorder.last.calls == [("__init__", ("Recorder", "a1")), ("SvcDoRun",), ("SvcPause",), ("SvcContinue",),
                                   ("SvcOtherEx", 200, 0, None), ("SvcOtherEx", ws.SERVICE_CONTROL_PARAMCHANGE, 0, None),
                                   ("SvcStop",)]
    assert service.status[1] == ws.SERVICE_STOP_PENDING  # what SvcRun reports after SvcDoRun


class NoPause(Recorder):
    SvcPause = None  # type: ignore[assignment]

    def GetAcceptedControls(self):
        return ws.SERVICE_ACCEPT_STOP  # neither pause nor PARAMCHANGE


def test_controls_a_service_does_not_accept_are_refused_as_the_scm_refuses_them(hosts):
    service = win32serviceutil.FrameworkService(NoPause, [])
    host, thread, codes = hosts(service)
    for op in (host.pause, host.reload):
        with pytest.raises(ws.error) as info:
            op()
        assert info.value.winerror == 1052
    assert host.state.name == "RUNNING"
    host.control(129)  # custom codes always reach the service
    host.request_stop("test")
    thread.join(30)
    assert codes == [ExitCode.OK] and ("SvcOtherEx", 129, 0, None) in Recorder.last.calls


class Crashes(Recorder):
    def SvcDoRun(self):
        raise RuntimeError("boom")


def test_an_exception_from_svcdorun_is_a_crash(hosts):
    host, thread, codes = hosts(win32serviceutil.FrameworkService(Crashes, []))
    thread.join(30)
    assert codes == [ExitCode.CRASH]


def test_accepted_controls_follow_the_hooks_defined():
    assert Recorder.GetAcceptedControls(Recorder.__new__(Recorder)) == (
        ws.SERVICE_ACCEPT_STOP | ws.SERVICE_ACCEPT_PAUSE_CONTINUE | ws.SERVICE_ACCEPT_SHUTDOWN | ws.SERVICE_ACCEPT_PARAMCHANGE)

    class Bare(win32serviceutil.ServiceFramework):
        _svc_name_ = "Bare"

    assert Bare.GetAcceptedControls(Bare.__new__(Bare)) == 0


# -- the command line and options ------------------------------------------------------------------
def _child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "STATE_DIRECTORY": str(tmp_path), **extra}


def test_custom_options_persist_per_service(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    win32serviceutil.SetServiceCustomOption(Recorder, "interval", 5)
    win32serviceutil.SetServiceCustomOption("Recorder", "path", "x")
    assert win32serviceutil.GetServiceCustomOption("Recorder", "interval") == 5
    assert win32serviceutil.GetServiceCustomOption(Recorder, "path") == "x"
    assert win32serviceutil.GetServiceCustomOption(Recorder, "missing", 7) == 7


SEED = ROOT / "tests" / "compat" / "seed_app.py"


def test_handle_command_line_usage_and_unknown_commands(tmp_path):
    for argv, text in (([], "Usage: 'seed_app.py [options] install|update|remove"), (["frobnicate"], "Unknown command")):
        proc = subprocess.run([sys.executable, str(SEED), *argv], env=_child_env(tmp_path), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 1 and text in proc.stdout


def test_install_reports_a_missing_manager_as_pywin32_reports_errors(tmp_path):
    proc = subprocess.run([sys.executable, str(SEED), "--startup", "auto", "install"], capture_output=True, text=True,
                          env=_child_env(tmp_path, SERVICEHOST_MANAGER="foreground"), timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0  # pywin32's HandleCommandLine returns the error, the script ignores it
    assert "Installing service SampleService" in proc.stdout
    assert "Error installing service: the foreground has no service manager" in proc.stdout


def test_the_seed_runs_and_ends_by_itself_with_exit_0(tmp_path):
    """The seed's main() is empty: SvcDoRun returns at once, and the service stops cleanly."""
    proc = subprocess.run([sys.executable, str(SEED), "debug"], env=_child_env(tmp_path), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "Debugging service SampleService - press Ctrl+C to stop." in proc.stdout
    assert "SampleService: The SampleService service has started." in proc.stderr


HOSTED = '''
import sys
from servicehost.compat import servicemanager, win32event, win32serviceutil
class Frozen(win32serviceutil.ServiceFramework):
    _svc_name_ = "Frozen"
    _svc_display_name_ = "Frozen"
    def __init__(self, args):
        super().__init__(args)
        self.stop = win32event.CreateEvent(None, 0, 0, None)
    def SvcStop(self):
        win32event.SetEvent(self.stop)
    def SvcDoRun(self):
        servicemanager.LogInfoMsg("running as a service: %s" % servicemanager.RunningAsService())
        win32event.WaitForSingleObject(self.stop, win32event.INFINITE)
servicemanager.Initialize()
servicemanager.PrepareToHostSingle(Frozen)
servicemanager.StartServiceCtrlDispatcher()
'''


def test_a_dispatcher_run_from_a_terminal_fails_with_1063_as_on_windows(tmp_path):
    """StartServiceCtrlDispatcher in a process no manager launched: pywin32's error 1063, even with
    SERVICEHOST_MANAGER naming one (that chooses where to install, not who launched this process).
    Launched by a manager it hosts the class: tests/compat/test_patterns.py."""
    proc = subprocess.run([sys.executable, "-c", HOSTED], env=_child_env(tmp_path, SERVICEHOST_MANAGER="supervisord"),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "servicehost.compat.pywintypes.error: (1063, 'StartServiceCtrlDispatcher', "
        "'The service process could not connect to the service controller.')"), proc.stderr
    assert "running as a service" not in proc.stdout + proc.stderr


# -- the constants, against the real pywin32 ---------------------------------------------------------
@pytest.mark.real_manager
def test_constants_match_the_real_pywin32():
    if not (TOOLS / "wine-python-env.sh").is_file():
        pytest.fail("shared tools not found") if IN_CI else pytest.skip(f"shared tools not found at {TOOLS}")
    wine = start_wine(TOOLS, IN_CI)
    names = {mod.__name__.rsplit(".", 1)[1]: sorted(n for n in dir(mod) if n.isupper() and isinstance(getattr(mod, n), int))
             for mod in (win32service, win32event, servicemanager)}
    real = wine.script("""
        import json, sys, importlib
        names = json.loads(sys.argv[1])
        print(json.dumps({m: {n: getattr(importlib.import_module(m), n, None) for n in ns} for m, ns in names.items()}))
    """, __import__("json").dumps(names))
    for module, values in real.items():  # type: ignore[union-attr]
        ours = {"win32service": win32service, "win32event": win32event, "servicemanager": servicemanager}[module]
        assert {n: getattr(ours, n) for n in values} == values, module

