"""What Windows answers: the Win32 error codes servicehost acts on, and how a refusal reads.

Every pywin32 call that fails raises ``pywintypes.error`` (``winerror``, ``strerror``); the manager
turns the ones an admin can act on into :class:`ServiceControlError` with a hint (:func:`scm_error`).
"""

from __future__ import annotations

from ...errors import ServiceHostError, UsageError

ERROR_ACCESS_DENIED = 5
ERROR_CALL_NOT_IMPLEMENTED = 120
ERROR_INVALID_LEVEL = 124
ERROR_INVALID_SERVICE_CONTROL = 1052
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DISABLED = 1058
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
ERROR_SERVICE_SPECIFIC_ERROR = 1066
ERROR_SERVICE_EXISTS = 1073
ERROR_SERVICE_NEVER_STARTED = 1077

#: What an admin can do about each refusal.
HINTS = {
    ERROR_ACCESS_DENIED: "run it from an elevated (Administrator) prompt",
    ERROR_SERVICE_DOES_NOT_EXIST: "the service does not exist: install it first",
    ERROR_SERVICE_DISABLED: "the service is disabled: update it with --start manual or auto",
    ERROR_SERVICE_NOT_ACTIVE: "the service is not running",
    ERROR_INVALID_SERVICE_CONTROL: "the service does not accept this control in its current state",
    ERROR_SERVICE_CANNOT_ACCEPT_CTRL: "the service cannot accept controls now (starting or stopping)",
    ERROR_SERVICE_EXISTS: "a service of that name exists already",
}


class ServiceControlError(UsageError):
    """The SCM refused a request; the message says what to do (exit code 2). ``winerror``: the
    Windows error code, when there is one."""

    def __init__(self, message: str, winerror: int | None = None) -> None:
        super().__init__(message)
        self.winerror = winerror


def winerror(exc: BaseException) -> int | None:
    """The Windows error code a pywin32 exception carries, if any."""
    return getattr(exc, "winerror", None)


def strerror(exc: BaseException) -> str:
    """``text (error N)`` for a pywin32 exception."""
    code = winerror(exc)
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{text} (error {code})" if code is not None else text


def scm_error(exc: BaseException, doing: str) -> ServiceHostError:
    """``cannot <doing>: <why> — <hint>`` for a failed pywin32 call."""
    code = winerror(exc)
    hint = HINTS.get(code or 0, "")
    return ServiceControlError(f"cannot {doing}: {strerror(exc)}" + (f" — {hint}" if hint else ""), code)


__all__ = [
    "ERROR_ACCESS_DENIED", "ERROR_CALL_NOT_IMPLEMENTED", "ERROR_FAILED_SERVICE_CONTROLLER_CONNECT",
    "ERROR_INVALID_LEVEL", "ERROR_INVALID_SERVICE_CONTROL", "ERROR_SERVICE_ALREADY_RUNNING",
    "ERROR_SERVICE_CANNOT_ACCEPT_CTRL", "ERROR_SERVICE_DISABLED", "ERROR_SERVICE_DOES_NOT_EXIST",
    "ERROR_SERVICE_EXISTS", "ERROR_SERVICE_NEVER_STARTED", "ERROR_SERVICE_NOT_ACTIVE", "ERROR_SERVICE_SPECIFIC_ERROR", "HINTS",
    "ServiceControlError", "scm_error", "strerror", "winerror",
]
