"""The lazy pywin32 import: the one door through which ``win32*`` modules come in.

Imported by ``servicehost.compat`` on every start of a ported service on Windows, so it stays tiny:
the standard library's ``importlib`` and servicehost's ``errors``, nothing else.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from ...errors import PlatformUnavailable

#: The pywin32 modules ``servicehost.compat`` hands out as they are on Windows.
COMPAT_MODULES = ("win32serviceutil", "win32service", "win32event", "servicemanager",
                  "win32api", "win32con", "winerror", "pywintypes", "win32timezone")


def import_pywin32(name: str) -> ModuleType:
    """Import a pywin32 module; PlatformUnavailable (saying what to install) if there is none."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PlatformUnavailable(
            f"pywin32 is needed for the Windows Service Control Manager and {name} cannot be imported "
            f"({exc}); install it into {sys.prefix}: {sys.executable} -m pip install pywin32") from None


def pywin32_module(name: str) -> ModuleType:
    """The real pywin32 module behind ``servicehost.compat.<name>`` on Windows."""
    if name not in COMPAT_MODULES:
        raise ValueError(f"servicehost.compat has no {name!r}; it has {', '.join(COMPAT_MODULES)}")
    return import_pywin32(name)


def win32_error() -> type[BaseException]:
    """What every pywin32 call raises (``pywintypes.error``, with ``winerror`` and ``strerror``)."""
    error: type[BaseException] = import_pywin32("pywintypes").error
    return error


__all__ = ["COMPAT_MODULES", "import_pywin32", "pywin32_module", "win32_error"]
