"""What a script sees of win32api, pywintypes, winerror and win32timezone through servicehost.compat:
one JSON document. ``test_win32_more.py`` runs it on Linux (servicehost's modules) and under Wine (the
real pywin32) and compares the two."""

import json, os, sys
from servicehost.compat import pywintypes, win32api, win32con, win32event, winerror, win32timezone

out = {}
out["sleep"] = [win32api.Sleep(20), win32api.Sleep(0, True), win32api.SleepEx(1, 0)]
e = pywintypes.error(5, "Fn", "text")
out["error"] = [repr(e), str(e), list(e.args), e.winerror, e.funcname, e.strerror]
out["error_partial"] = [[repr(x), str(x), x.winerror, x.funcname, x.strerror]
                        for x in (pywintypes.error(), pywintypes.error(7), pywintypes.error(7, "F"))]
out["same_error"] = [win32api.error is pywintypes.error, win32event.error is pywintypes.error]
win32api.SetLastError(1062)
out["last_set"] = win32api.GetLastError()
ev = win32event.CreateEvent(None, 0, 0, None)
out["close"] = win32api.CloseHandle(ev)
try:
    win32api.CloseHandle(12345678)
except pywintypes.error as x:
    out["close_bad"] = [x.winerror, x.funcname, win32api.GetLastError()]
try:
    win32api.SetConsoleCtrlHandler(print, False)
except ValueError as x:
    out["unregistered"] = str(x)
try:
    win32api.SetConsoleCtrlHandler(5, True)
except TypeError as x:
    out["not_callable"] = str(x)
handler = lambda event: True
out["add_remove"] = [win32api.SetConsoleCtrlHandler(handler, True), win32api.SetConsoleCtrlHandler(handler, False)]
out["ignore"] = [win32api.SetConsoleCtrlHandler(None, True), win32api.SetConsoleCtrlHandler(None, False)]
out["pid"] = win32api.GetCurrentProcessId() == os.getpid()
out["module"] = win32api.GetModuleFileName(0) == sys.executable
out["env"] = [win32api.SetEnvironmentVariable("SH_PROBE", "v"), win32api.GetEnvironmentVariable("SH_PROBE"),
              win32api.ExpandEnvironmentStrings("a%SH_PROBE%b%SH_NOT_SET%c"),
              win32api.GetEnvironmentVariable("SH_NOT_SET")]
out["words"] = [win32api.LOWORD(0x12345678), win32api.HIWORD(0x12345678), win32api.LOBYTE(0x1234),
                win32api.HIBYTE(0x1234), win32api.MAKEWORD(0x34, 0x12), win32api.MAKELONG(0x5678, 0x1234)]
out["ticks"] = isinstance(win32api.GetTickCount(), int)
out["hresult"] = [winerror.HRESULT_FROM_WIN32(5), winerror.HRESULT_FROM_WIN32(0), winerror.SUCCEEDED(0),
                  winerror.FAILED(winerror.E_FAIL), winerror.HRESULT_CODE(winerror.E_ACCESSDENIED),
                  winerror.HRESULT_FACILITY(winerror.E_ACCESSDENIED), winerror.HRESULT_SEVERITY(winerror.E_FAIL)]
now, utc = win32timezone.now(), win32timezone.utcnow()
out["tz"] = [now.tzinfo is not None, utc.utcoffset().total_seconds(), abs((now - utc).total_seconds()) < 5]
print(json.dumps(out))
