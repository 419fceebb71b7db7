"""``win32event`` — the real pywin32 module on Windows; elsewhere in-process events with the same
calls, constants and return values (auto-reset and manual-reset, ``WaitForMultipleObjects``)."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from ..platforms.windows.pywin32 import pywin32_module

    sys.modules[__name__] = pywin32_module("win32event")
else:
    import itertools
    import threading
    from collections.abc import Sequence
    from typing import Any

    from .win32service import error

    INFINITE = -1  # pywin32's value (0xFFFFFFFF as a signed DWORD); both are accepted
    WAIT_OBJECT_0, WAIT_ABANDONED, WAIT_ABANDONED_0, WAIT_TIMEOUT, WAIT_FAILED = 0, 128, 128, 258, -1
    MAXIMUM_WAIT_OBJECTS = 64
    EVENT_ALL_ACCESS, EVENT_MODIFY_STATE, SYNCHRONIZE = 2031619, 2, 1048576

    _changed = threading.Condition()  # one for every event: a wait may span several
    _numbers = itertools.count(0x100, 4)

    class PyHANDLE:
        """An event handle: ``Close()``, ``int(handle)``, usable in ``with``."""

        def __init__(self, manual_reset: bool, signaled: bool) -> None:
            self.manual_reset = manual_reset
            self.signaled = signaled
            self.handle = next(_numbers)
            self.closed = False

        def Close(self) -> None:
            self.closed = True

        def Detach(self) -> int:
            return self.handle

        def __int__(self) -> int:
            return self.handle

        def __enter__(self) -> PyHANDLE:
            return self

        def __exit__(self, *exc: object) -> None:
            self.Close()

        def __repr__(self) -> str:
            return f"<PyHANDLE:{self.handle}>"

    def CreateEvent(sa: Any, bManualReset: bool, bInitialState: bool, name: str | None = None) -> PyHANDLE:
        """A new event (``sa`` and ``name`` are accepted and ignored: events live in this process)."""
        return PyHANDLE(bool(bManualReset), bool(bInitialState))

    def _check(handle: Any, func: str) -> PyHANDLE:
        if not isinstance(handle, PyHANDLE) or handle.closed:
            raise error(6, func, "The handle is invalid.")
        return handle

    def SetEvent(handle: PyHANDLE) -> None:
        with _changed:
            _check(handle, "SetEvent").signaled = True
            _changed.notify_all()

    def ResetEvent(handle: PyHANDLE) -> None:
        with _changed:
            _check(handle, "ResetEvent").signaled = False

    def _timeout(milliseconds: int | None) -> float | None:
        if milliseconds is None or milliseconds < 0 or milliseconds == 0xFFFFFFFF:
            return None
        return milliseconds / 1000.0

    def WaitForSingleObject(handle: PyHANDLE, milliseconds: int) -> int:
        return WaitForMultipleObjects([handle], False, milliseconds)

    def WaitForMultipleObjects(handles: Sequence[PyHANDLE], bWaitAll: bool, milliseconds: int) -> int:
        """WAIT_OBJECT_0 + the index of the (first) signaled event, or WAIT_TIMEOUT. With
        ``bWaitAll`` every event must be signaled; auto-reset events are reset by the wait."""
        items = [_check(h, "WaitForMultipleObjects") for h in handles]
        if not items or len(items) > MAXIMUM_WAIT_OBJECTS:
            raise error(87, "WaitForMultipleObjects", "The parameter is incorrect.")

        def ready() -> bool:
            return all(h.signaled for h in items) if bWaitAll else any(h.signaled for h in items)

        with _changed:
            if not _changed.wait_for(ready, _timeout(milliseconds)):
                return WAIT_TIMEOUT
            if bWaitAll:
                for h in items:
                    if not h.manual_reset:
                        h.signaled = False
                return WAIT_OBJECT_0
            index = next(i for i, h in enumerate(items) if h.signaled)
            if not items[index].manual_reset:
                items[index].signaled = False
            return WAIT_OBJECT_0 + index
