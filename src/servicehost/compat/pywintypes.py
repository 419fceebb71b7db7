"""``pywintypes`` — the real pywin32 module on Windows; elsewhere ``error``, the exception every
compat call raises (``win32service.error``, ``win32event.error`` and ``win32api.error`` are this
class, as in pywin32), ``com_error``, ``TRUE`` and ``FALSE``. Handles, security objects, times and
the other Win32 structures have no meaning here: using one raises NotImplementedError."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from ..platforms.windows.pywin32 import pywin32_module

    sys.modules[__name__] = pywin32_module("pywintypes")
else:
    import threading
    from typing import Any

    from . import _unavailable

    TRUE, FALSE = True, False

    #: What ``win32api.GetLastError()`` answers on each thread: the code of the last error made there.
    last_error = threading.local()

    class error(Exception):
        """A failed Win32 call: ``args`` is ``(winerror, funcname, strerror)``, each also an attribute
        (None when not given), as pywin32's. Making one sets this thread's last error code."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            if args and isinstance(args[0], int):
                last_error.code = args[0]

        @property
        def winerror(self) -> Any:
            return self.args[0] if len(self.args) > 0 else None

        @property
        def funcname(self) -> Any:
            return self.args[1] if len(self.args) > 1 else None

        @property
        def strerror(self) -> Any:
            return self.args[2] if len(self.args) > 2 else None

    class com_error(Exception):
        """A failed COM call (``hresult``, ``strerror``, ``excepinfo``, ``argerror``); never raised here."""

    UNAVAILABLE = _unavailable.names({
        "Win32 handles, overlapped I/O and security objects exist only on Windows: servicehost.compat's "
        "win32event handles come from CreateEvent, a file or socket is Python's own object, and access is "
        "the file mode and the service's account":
            "ACL ACLType HANDLE HANDLEType HKEY OVERLAPPED OVERLAPPEDType SECURITY_ATTRIBUTES "
            "SECURITY_ATTRIBUTESType SECURITY_DESCRIPTOR SECURITY_DESCRIPTORType SID SIDType",
        "COM and GUIDs are Windows': use uuid.uuid4() for a unique id":
            "CreateGuid IID IIDType",
        "use datetime.datetime (datetime.fromtimestamp for a time in seconds)":
            "DosDateTimeToTime Time TimeStamp TimeType",
        "Windows' structures and text encodings: use bytes.decode and the standard library":
            "DEVMODEType DEVMODEWType IsTextUnicode UnicodeFromRaw WAVEFORMATEX WAVEFORMATEXType",
    })
    __getattr__ = _unavailable.module_getattr("pywintypes", UNAVAILABLE, globals())
