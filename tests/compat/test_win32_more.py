"""servicehost.compat's modules around the four: win32api, win32con, winerror, pywintypes and
win32timezone — what they do on Linux (real processes and real signals for the console handlers),
what they refuse and how, and that they match the real pywin32 under Wine: the same probe script's
answers, every constant's value, and every name of pywin32's modules either provided or refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="on Windows servicehost.compat is pywin32 itself")

from servicehost.compat import (  # noqa: E402
    pywintypes,
    win32api,
    win32con,
    win32event,
    win32service,
    win32timezone,
    winerror,
)

from ..conftest import IN_CI, TOOLS  # noqa: E402
from ..platforms.wine import ROOT, start_wine  # noqa: E402

PROBE = Path(__file__).with_name("win32_probe.py")
HANG_GUARD = 60.0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


# -- pywintypes.error: the one exception class --------------------------------------------------------
def test_every_compat_module_raises_pywintypes_error():
    assert win32api.error is win32service.error is win32event.error is pywintypes.error
    event = win32event.CreateEvent(None, 0, 0, None)
    event.Close()
    with pytest.raises(pywintypes.error) as info:
        win32event.SetEvent(event)
    assert (info.value.winerror, info.value.funcname) == (6, "SetEvent")
    assert win32api.GetLastError() == 6  # the last error made on this thread


def test_an_error_made_on_another_thread_is_not_this_threads_last_error():
    import threading

    win32api.SetLastError(0)
    thread = threading.Thread(target=pywintypes.error, args=(1062, "StartService", "x"))
    thread.start()
    thread.join(HANG_GUARD)
    assert win32api.GetLastError() == 0


# -- win32api --------------------------------------------------------------------------------------
def test_sleep_sleeps_the_whole_time_and_returns_0():
    start = time.monotonic()
    assert win32api.Sleep(50, True) == 0 and win32api.SleepEx(0) == 0
    assert time.monotonic() - start >= 0.05  # at least what was asked (no upper bound: a loaded machine)


def test_close_handle_closes_a_compat_event_and_refuses_anything_else():
    event = win32event.CreateEvent(None, 1, 0, None)
    win32api.CloseHandle(event)
    with pytest.raises(pywintypes.error) as info:
        win32event.WaitForSingleObject(event, 0)
    assert info.value.winerror == winerror.ERROR_INVALID_HANDLE
    with pytest.raises(pywintypes.error) as info:
        win32api.CloseHandle(event)
    assert info.value.winerror == winerror.ERROR_INVALID_HANDLE


def test_format_message_gives_windows_text_for_the_codes_compat_raises():
    assert win32api.FormatMessage(winerror.ERROR_SERVICE_NOT_ACTIVE) == "The service has not been started.\r\n"
    assert win32api.FormatMessage(winerror.ERROR_SERVICE_ALREADY_RUNNING).startswith("An instance of the service")
    with pytest.raises(pywintypes.error) as info:
        win32api.FormatMessage(0x7777777)
    assert info.value.winerror == winerror.ERROR_MR_MID_NOT_FOUND
    with pytest.raises(NotImplementedError, match=r"FormatMessage\(error_code\)"):
        win32api.FormatMessage(0x1000, None, 5, 0, None)


CTRL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from servicehost.compat import win32api, win32con
    seen = []
    def first(event):
        seen.append(("first", event))
        return True
    def second(event):
        seen.append(("second", event))
        return False
    def broken(event):
        raise RuntimeError("a handler that fails")
    win32api.SetConsoleCtrlHandler(first, True)
    win32api.SetConsoleCtrlHandler(second, True)
    win32api.SetConsoleCtrlHandler(broken, True)
    os.kill(os.getpid(), signal.SIGINT)  # last added first; first returns True: handled
    print("after 1:", seen, flush=True)
    win32api.SetConsoleCtrlHandler(first, False)
    win32api.SetConsoleCtrlHandler(None, True)  # Ctrl-C ignored: no handler called
    os.kill(os.getpid(), signal.SIGINT)
    print("after 2:", seen, flush=True)
    win32api.SetConsoleCtrlHandler(None, False)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # second returns False: the default, KeyboardInterrupt
        win32api.Sleep(60000)
    except KeyboardInterrupt:
        print("after 3: KeyboardInterrupt", seen, flush=True)
    win32api.SetConsoleCtrlHandler(second, False)
    win32api.SetConsoleCtrlHandler(broken, False)
    print("handler:", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
""")


def test_console_ctrl_handlers_get_ctrl_c_in_windows_order(tmp_path):
    """Real SIGINTs to a real process: the handler added last is called first, the first True ends
    it, a failing one is reported and skipped, None ignores Ctrl-C, none handling it is KeyboardInterrupt."""
    proc = subprocess.run([sys.executable, "-c", CTRL_SCRIPT], env=_env(), capture_output=True, text=True,
                          timeout=HANG_GUARD, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "after 1: [('second', 0), ('first', 0)]"
    assert lines[1] == "after 2: [('second', 0), ('first', 0)]"
    assert lines[2] == "after 3: KeyboardInterrupt [('second', 0), ('first', 0), ('second', 0)]"
    assert lines[3] == "handler: True"  # the last handler removed: Python's own again
    assert proc.stderr.count("ConsoleCtrlHandler function failed") == 2 and "a handler that fails" in proc.stderr


def test_a_ctrl_handler_never_takes_sigint_from_servicehosts_host():
    """The host's signal handler stays (a stop is SvcStop); the handler is kept for when the host is gone."""
    previous = signal.signal(signal.SIGINT, lambda *a: None)  # what signals_to_host installs while running
    try:
        handler = lambda event: True  # noqa: E731
        win32api.SetConsoleCtrlHandler(handler, True)
        assert signal.getsignal(signal.SIGINT) is not win32api._on_ctrl_c
        win32api.SetConsoleCtrlHandler(handler, False)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_rest_of_win32api_exists_and_says_what_to_use_instead():
    from servicehost.compat.win32api import RegOpenKeyEx  # the script's imports work

    with pytest.raises(NotImplementedError, match=r"win32api.RegOpenKeyEx .*config file.*SetServiceCustomOption"):
        RegOpenKeyEx(win32con.HKEY_LOCAL_MACHINE, "SOFTWARE")
    with pytest.raises(NotImplementedError, match=r"win32api.MessageBox .*no desktop"):
        win32api.MessageBox(0, "hello", "title")
    with pytest.raises(AttributeError, match="NoSuchFunction"):
        win32api.NoSuchFunction  # noqa: B018 (not pywin32's either)


def test_constants_outside_the_set_and_out_of_scope_modules_say_so():
    with pytest.raises(AttributeError, match=r"servicehost.compat.win32con.*docs/compat.md"):
        win32con.WM_PAINT  # noqa: B018
    with pytest.raises(ImportError, match=r"no win32pipe off Windows: named-pipe servers"):
        from servicehost.compat import win32pipe  # noqa: F401
    with pytest.raises(ImportError, match=r"no win32gui off Windows: device notifications"):
        from servicehost.compat import win32gui  # noqa: F401


def test_pywintypes_handles_and_times_are_refused_with_the_alternative():
    with pytest.raises(NotImplementedError, match=r"pywintypes.Time .*datetime"):
        pywintypes.Time(0)


def test_win32timezone_local_and_utc():
    now, utc = win32timezone.now(), win32timezone.utcnow()
    assert utc.utcoffset().total_seconds() == 0 and now.utcoffset() is not None
    assert abs((now - utc).total_seconds()) < HANG_GUARD  # the same instant, in two zones
    with pytest.raises(NotImplementedError, match="zoneinfo"):
        win32timezone.TimeZoneInfo("Pacific Standard Time")


# -- the same as the real pywin32 ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine():
    if not (TOOLS / "wine-python-env.sh").is_file():
        pytest.fail("shared tools not found") if IN_CI else pytest.skip(f"shared tools not found at {TOOLS}")
    return start_wine(TOOLS, IN_CI)


@pytest.mark.real_manager
def test_the_probe_answers_alike_here_and_with_the_real_pywin32(wine):
    here = subprocess.run([sys.executable, str(PROBE)], env=_env(), capture_output=True, text=True,
                          timeout=HANG_GUARD, stdin=subprocess.DEVNULL, check=True)
    real = wine.script(PROBE.read_text(encoding="utf-8"))
    assert json.loads(here.stdout) == real


@pytest.mark.real_manager
def test_constants_and_names_match_the_real_pywin32(wine):
    """Every constant here has pywin32's value; every name of pywin32's win32api, pywintypes and
    win32timezone is provided or refused with an alternative (none forgotten, none invented)."""
    modules = {"win32con": win32con, "winerror": winerror, "win32api": win32api, "pywintypes": pywintypes,
               "win32timezone": win32timezone}
    constants = {name: sorted(n for n, v in vars(m).items() if n.isupper() and type(v) is int)
                 for name, m in modules.items() if name in ("win32con", "winerror")}
    real = wine.script("""
        import importlib, json, sys, types
        constants = json.loads(sys.argv[1])
        values = {m: {n: getattr(importlib.import_module(m), n, None) for n in ns} for m, ns in constants.items()}
        names, functions = {}, {}
        for m in ("win32api", "pywintypes", "win32timezone"):
            mod = importlib.import_module(m)
            names[m] = dir(mod)
            functions[m] = sorted(n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))
                                  and not isinstance(getattr(mod, n), types.ModuleType)
                                  and getattr(getattr(mod, n), "__module__", m) in (m, "pywintypes", None))
        print(json.dumps({"values": values, "names": names, "functions": functions}))
    """, json.dumps(constants))
    for module, values in real["values"].items():  # type: ignore[index]
        assert {n: getattr(modules[module], n) for n in values} == values, module
    for module, functions in real["functions"].items():  # type: ignore[index]
        ours = modules[module]
        refused = set(ours.UNAVAILABLE)
        assert not [n for n in functions if n not in vars(ours) and n not in refused], f"{module}: forgotten"
        assert not refused - set(real["names"][module]), f"{module}: refused names pywin32 does not have"
        provided = {n for n, v in vars(ours).items() if not hasattr(v, "alternative")}  # a stub made earlier is not
        assert not refused & provided, f"{module}: both provided and refused"
