"""``win32api`` — the real pywin32 module on Windows; elsewhere what service code calls of it:

* **supported** (the same meaning here): ``Sleep``/``SleepEx`` (alertable or not: nothing here
  queues an APC, so both sleep the whole time and return 0), ``GetCurrentProcessId``,
  ``GetCurrentThreadId``, ``GetTickCount``, ``GetComputerName``, ``GetUserName``,
  ``GetModuleFileName`` (the interpreter), ``GetCommandLine``, ``Get``/``SetEnvironmentVariable``,
  ``ExpandEnvironmentStrings`` (``%NAME%``), ``GetTempPath``, ``GetFullPathName``, ``CloseHandle``
  (of a ``win32event`` handle), ``error`` (``pywintypes.error``);
* **emulated**: ``SetConsoleCtrlHandler`` — Ctrl-C (SIGINT) is ``CTRL_C_EVENT`` for the handlers,
  last added first, the first returning True ends it, as Windows calls them; while servicehost's
  host owns the process's signals (``debug``, ``run``) a stop is ``SvcStop``, as a service's stop
  is on Windows. ``GetLastError``/``SetLastError``: the code of the last ``pywintypes.error`` made
  on this thread. ``FormatMessage(code)``: Windows' English text for the codes compat raises;
* **not available**: everything else of pywin32's ``win32api`` (the registry, the desktop,
  resources, shutdown ...): each name exists and calling it raises NotImplementedError naming
  the alternative (the ``UNAVAILABLE`` table; docs/compat.md).
"""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from ..platforms.windows.pywin32 import pywin32_module

    sys.modules[__name__] = pywin32_module("win32api")
else:
    import getpass
    import operator
    import os
    import re
    import shlex
    import signal
    import socket
    import tempfile
    import threading
    import time
    import traceback
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    from . import _unavailable, pywintypes, winerror
    from .pywintypes import error
    from .win32con import CTRL_C_EVENT

    # -- time, process, thread ------------------------------------------------------------------------
    _INFINITE = 0xFFFFFFFF

    def Sleep(time_ms: int, bAlertable: int = 0) -> int:
        """Suspend this thread for ``time_ms`` milliseconds (INFINITE, or -1: for good); 0, as
        SleepEx returns when the time elapsed (no I/O completion callback can end it early here)."""
        ms = operator.index(time_ms)  # an int, as pywin32 takes it (a float is a TypeError there too)
        if ms in (-1, _INFINITE):
            threading.Event().wait()  # never set: Windows' INFINITE sleep never returns either
        elif ms > 0:
            time.sleep(ms / 1000.0)
        return 0

    SleepEx = Sleep

    def GetCurrentProcessId() -> int:
        return os.getpid()

    def GetCurrentThreadId() -> int:
        return threading.get_native_id()

    def GetTickCount() -> int:
        """Milliseconds since the machine started, wrapping at 2**32 as Windows' does."""
        clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)  # Linux's counts a suspend, as Windows'
        return int(time.clock_gettime(clock) * 1000) & 0xFFFFFFFF

    def GetLastError() -> int:
        return int(getattr(pywintypes.last_error, "code", 0))

    def SetLastError(errVal: int) -> None:
        pywintypes.last_error.code = int(errVal)

    # -- the machine, the user, the environment ----------------------------------------------------------
    def GetComputerName() -> str:
        """The machine's name as Windows gives its NetBIOS name: the host name's first label, upper case."""
        return socket.gethostname().split(".")[0].upper()

    def GetUserName() -> str:
        return getpass.getuser()

    def GetModuleFileName(hModule: Any = None) -> str:
        """The program of this process (``hModule`` 0 or None): the interpreter."""
        if hModule not in (None, 0):
            raise error(126, "GetModuleFileName", "The specified module could not be found.")
        return sys.executable

    GetModuleFileNameW = GetModuleFileName

    def GetCommandLine() -> str:
        return shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))

    def GetEnvironmentVariable(name: str) -> str | None:
        return os.environ.get(name)

    def SetEnvironmentVariable(name: str, value: str | None) -> None:
        """Set ``name`` for this process and its children; None removes it."""
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    GetEnvironmentVariableW, SetEnvironmentVariableW = GetEnvironmentVariable, SetEnvironmentVariable

    def ExpandEnvironmentStrings(in_str: str) -> str:
        """``%NAME%`` replaced by the variable's value; an unknown name stays as written, as on Windows."""
        return re.sub(r"%([^%]+)%", lambda m: os.environ.get(m.group(1), m.group(0)), in_str)

    def GetTempPath() -> str:
        return os.path.join(tempfile.gettempdir(), "")

    def GetFullPathName(fileName: str) -> str:
        return os.path.abspath(fileName)

    def CloseHandle(handle: Any) -> None:
        """Close a handle compat made (a ``win32event`` event); anything else is error 6, as on Windows."""
        close = getattr(handle, "Close", None)
        if close is None or getattr(handle, "closed", False):
            raise error(winerror.ERROR_INVALID_HANDLE, "CloseHandle", "The handle is invalid.")
        close()

    # -- messages --------------------------------------------------------------------------------------
    #: Windows' English text for each code compat's modules raise (FormatMessage ends it with CR LF).
    MESSAGES = {
        winerror.ERROR_SUCCESS: "The operation completed successfully.",
        winerror.ERROR_FILE_NOT_FOUND: "The system cannot find the file specified.",
        winerror.ERROR_ACCESS_DENIED: "Access is denied.",
        winerror.ERROR_INVALID_HANDLE: "The handle is invalid.",
        winerror.ERROR_INVALID_PARAMETER: "The parameter is incorrect.",
        winerror.ERROR_CALL_NOT_IMPLEMENTED: "This function is not supported on this system.",
        winerror.ERROR_DEPENDENT_SERVICES_RUNNING:
            "A stop control has been sent to a service that other running services are dependent on.",
        winerror.ERROR_INVALID_SERVICE_CONTROL: "The requested control is not valid for this service.",
        winerror.ERROR_SERVICE_REQUEST_TIMEOUT:
            "The service did not respond to the start or control request in a timely fashion.",
        winerror.ERROR_SERVICE_ALREADY_RUNNING: "An instance of the service is already running.",
        winerror.ERROR_SERVICE_DISABLED:
            "The service cannot be started, either because it is disabled or because it has no enabled "
            "devices associated with it.",
        winerror.ERROR_SERVICE_DOES_NOT_EXIST: "The specified service does not exist as an installed service.",
        winerror.ERROR_SERVICE_CANNOT_ACCEPT_CTRL: "The service cannot accept control messages at this time.",
        winerror.ERROR_SERVICE_NOT_ACTIVE: "The service has not been started.",
        winerror.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
            "The service process could not connect to the service controller.",
        winerror.ERROR_SERVICE_SPECIFIC_ERROR: "The service has returned a service-specific error code.",
        winerror.ERROR_SERVICE_MARKED_FOR_DELETE: "The specified service has been marked for deletion.",
        winerror.ERROR_SERVICE_EXISTS: "The specified service already exists.",
    }

    def FormatMessage(errCode: int, *more: Any) -> str:
        """The text of a Win32 error code (the one-argument form); a code compat never raises has
        none here: error 317, as Windows answers for a code it has no text for."""
        if more:
            raise NotImplementedError(
                "win32api.FormatMessage(flags, source, ...) reads Windows' message tables: only "
                "FormatMessage(error_code) is available off Windows (servicehost.compat)")
        text = MESSAGES.get(int(errCode))
        if text is None:
            raise error(winerror.ERROR_MR_MID_NOT_FOUND, "FormatMessageW",
                        f"The system cannot find message text for message number 0x{int(errCode):x}.")
        return text + "\r\n"

    FormatMessageW = FormatMessage

    # -- words and bytes (SvcOtherEx's event data) ---------------------------------------------------------
    def LOWORD(val: int) -> int:
        return val & 0xFFFF

    def HIWORD(val: int) -> int:
        return (val >> 16) & 0xFFFF

    def LOBYTE(val: int) -> int:
        return val & 0xFF

    def HIBYTE(val: int) -> int:
        return (val >> 8) & 0xFF

    def MAKEWORD(low: int, high: int) -> int:
        return (low & 0xFF) | ((high & 0xFF) << 8)

    def MAKELONG(low: int, high: int) -> int:
        return (low & 0xFFFF) | ((high & 0xFFFF) << 16)

    # -- console control handlers ----------------------------------------------------------------------
    _console = threading.Lock()
    _handlers: list[Callable[[int], Any]] = []
    _ignore_ctrl_c = [False]

    def SetConsoleCtrlHandler(ctrlHandler: Callable[[int], Any] | None, bAdd: int = True) -> None:
        """Add (``bAdd``) or remove a handler called with the console event; ``None`` with ``bAdd``
        ignores Ctrl-C, with ``not bAdd`` restores it. Off Windows the console event is Ctrl-C
        (SIGINT → CTRL_C_EVENT): in a process whose main thread servicehost's host does not run,
        or before it runs. Under the host a stop is ``SvcStop``, as a service's stop is on Windows."""
        with _console:
            if ctrlHandler is None:
                _ignore_ctrl_c[0] = bool(bAdd)
            elif not callable(ctrlHandler):
                raise TypeError(f"First argument must be callable (got {type(ctrlHandler).__name__})")
            elif bAdd:
                _handlers.append(ctrlHandler)
            else:
                kept = [h for h in _handlers if h is not ctrlHandler]
                if len(kept) == len(_handlers):
                    raise ValueError("The object has not been registered")
                _handlers[:] = kept
            _route_ctrl_c(bool(_handlers) or _ignore_ctrl_c[0])

    def _route_ctrl_c(wanted: bool) -> None:
        """SIGINT to :func:`_on_ctrl_c` while handlers are registered (or Ctrl-C is ignored), back to
        Python's KeyboardInterrupt when not; never over a handler someone else set (servicehost's
        host while it runs), and only from the main thread, the one Python lets set a handler."""
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGINT)
        if wanted and current in (signal.default_int_handler, signal.SIG_DFL):
            signal.signal(signal.SIGINT, _on_ctrl_c)
        elif not wanted and current is _on_ctrl_c:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        """Windows' order: the handler added last first; the first to return True ends the search;
        none did: the default, Python's KeyboardInterrupt. A handler that raises is reported and
        the next one called, as pywin32 does."""
        with _console:
            if _ignore_ctrl_c[0]:
                return
            handlers = list(reversed(_handlers))
        for handler in handlers:
            try:
                if handler(CTRL_C_EVENT):
                    return
            except Exception:
                sys.stderr.write("ConsoleCtrlHandler function failed\n")
                traceback.print_exc()
        signal.default_int_handler(signum, frame)

    # -- the rest: not available -----------------------------------------------------------------------
    UNAVAILABLE = _unavailable.names({
        "there is no registry here: keep settings in servicehost's config file or SERVICEHOST_* environment, "
        "or per service with win32serviceutil.Get/SetServiceCustomOption":
            "RegCloseKey RegConnectRegistry RegCopyTree RegCreateKey RegCreateKeyEx RegDeleteKey RegDeleteKeyEx "
            "RegDeleteTree RegDeleteValue RegEnumKey RegEnumKeyEx RegEnumKeyExW RegEnumValue RegFlushKey "
            "RegGetKeySecurity RegLoadKey RegNotifyChangeKeyValue RegOpenCurrentUser RegOpenKey RegOpenKeyEx "
            "RegOpenKeyTransacted RegOverridePredefKey RegQueryInfoKey RegQueryInfoKeyW RegQueryValue "
            "RegQueryValueEx RegRestoreKey RegSaveKey RegSaveKeyEx RegSetKeySecurity RegSetValue RegSetValueEx "
            "RegUnLoadKey GetProfileSection GetProfileVal WriteProfileSection WriteProfileVal",
        "a service has no desktop (windows, messages, keyboard, mouse, display, sounds): log instead":
            "Beep ChangeDisplaySettings ChangeDisplaySettingsEx ClipCursor DragFinish DragQueryFile "
            "EnumDisplayDevices EnumDisplayMonitors EnumDisplaySettings EnumDisplaySettingsEx GetAsyncKeyState "
            "GetConsoleTitle GetCursorPos GetFocus GetKeyState GetKeyboardLayout GetKeyboardLayoutList "
            "GetKeyboardLayoutName GetKeyboardState GetLastInputInfo GetMonitorInfo GetSysColor GetSystemMetrics "
            "GetWindowLong LoadCursor LoadKeyboardLayout MapVirtualKey MessageBeep MessageBox MessageBoxEx "
            "MonitorFromPoint MonitorFromRect MonitorFromWindow PostMessage PostQuitMessage PostThreadMessage "
            "PyDISPLAY_DEVICEType RGB RegisterWindowMessage SendMessage SetClassLong SetClassWord "
            "SetConsoleTitle SetCursor SetCursorPos SetSysColors SetWindowLong SetWindowWord ShowCursor "
            "ToAsciiEx VkKeyScan VkKeyScanEx WinHelp keybd_event mouse_event",
        "Win32 process and thread handles are Windows': use os.kill, signal and subprocess "
        "(a stop of this service is SvcStop; GenerateConsoleCtrlEvent's Ctrl-C is os.killpg(pgid, signal.SIGINT))":
            "DuplicateHandle GenerateConsoleCtrlEvent GetCurrentProcess GetCurrentThread GetHandleInformation "
            "GetStdHandle OpenProcess OpenThread SetHandleInformation SetStdHandle TerminateProcess WinExec "
            "ShellExecute FindExecutable",
        "shutting the machine down is the service manager's (systemctl poweroff), never a service's":
            "AbortSystemShutdown ExitWindows ExitWindowsEx InitiateSystemShutdown SetSystemPowerState "
            "GetPwrCapabilities GetSystemPowerStatus",
        "DLLs and their resources are Windows': use importlib or ctypes.CDLL":
            "BeginUpdateResource EndUpdateResource EnumResourceLanguages EnumResourceNames EnumResourceTypes "
            "FreeLibrary GetDllDirectory GetFileVersionInfo GetModuleHandle GetProcAddress "
            "LoadLibrary LoadLibraryEx LoadResource LoadString SetDllDirectory UpdateResource",
        "use the standard library: os, os.path, shutil, glob, platform, time, locale":
            "Apply CommandLineToArgv CopyFile DebugBreak DeleteFile FindCloseChangeNotification FindFiles "
            "FindFirstChangeNotification FindNextChangeNotification GetComputerNameEx GetComputerObjectName "
            "GetDateFormat GetDiskFreeSpace GetDiskFreeSpaceEx GetDomainName "
            "GetFileAttributes GetLocalTime GetLogicalDriveStrings GetLogicalDrives GetLongPathName "
            "GetLongPathNameW GetNativeSystemInfo GetShortPathName GetSystemCpuSetInformation "
            "GetSystemDefaultLCID GetSystemDefaultLangID GetSystemDirectory GetSystemFileCacheSize GetSystemInfo "
            "GetSystemTime GetTempFileName GetThreadLocale GetTimeFormat GetTimeZoneInformation "
            "GetUserDefaultLCID GetUserDefaultLangID GetUserNameEx GetVersion GetVersionEx GetVolumeInformation "
            "GetWindowsDirectory GlobalMemoryStatus GlobalMemoryStatusEx MAKELANGID MoveFile MoveFileEx OutputDebugString PySYSTEM_CPU_SET_INFORMATIONType SearchPath "
            "SetErrorMode SetFileAttributes SetLocalTime SetSystemFileCacheSize "
            "SetSystemTime SetThreadLocale SetTimeZoneInformation",
    })
    __getattr__ = _unavailable.module_getattr("win32api", UNAVAILABLE, globals())
