"""The small exception hierarchy and the exit codes every platform maps.

Library code raises; only ``cli.py`` turns an exception into a message and an exit code.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """How a servicehost process ends. Distinct codes let a manager avoid restart storms.

    ======================  ====  ==================================================  ==========
    name                    code  meaning                                             restart?
    ======================  ====  ==================================================  ==========
    OK                      0     stopped cleanly (asked to, or every service ended)   no
    CRASH                   1     an exception escaped a service while running         yes
    CONFIG_ERROR            2     bad config, bad command line, bad target             no
    START_FAILURE           3     a service failed (or timed out) while starting       no
    STOP_INCOMPLETE         4     a *requested* stop passed its deadline or was        no
                                  forced; what did not finish was logged and counted
    HUNG                    5     a worker ran one task past ``hang_timeout`` and the  yes
                                  hang policy is ``restart``
    ======================  ====  ==================================================  ==========

    ``STOP_INCOMPLETE`` is a success for every manager: a stop an admin asked for must never
    trigger recovery (``platforms.entry.EXIT_STATUS``, given to every manager).
    """

    OK = 0
    CRASH = 1
    CONFIG_ERROR = 2
    START_FAILURE = 3
    STOP_INCOMPLETE = 4
    HUNG = 5

    @property
    def is_failure(self) -> bool:
        """True when the manager should treat the exit as a failure (and may restart)."""
        return self in (ExitCode.CRASH, ExitCode.HUNG, ExitCode.START_FAILURE, ExitCode.CONFIG_ERROR)

    @property
    def restartable(self) -> bool:
        """True when restarting may help (not for bad config or a service that cannot start)."""
        return self in (ExitCode.CRASH, ExitCode.HUNG)


class ServiceHostError(Exception):
    """Base of every error servicehost raises on purpose. ``exit_code`` says how to end."""

    exit_code: ExitCode = ExitCode.CRASH
    detail: str = ""
    """More than the one-line message (e.g. the traceback of a target that failed to import):
    shown by ``debug``, never on the console of ``run``."""


class ConfigError(ServiceHostError):
    """A setting, file or command-line value is wrong.

    The message names where the value came from, the key, what was expected and what was
    found, so that one line is enough to fix it.
    """

    exit_code = ExitCode.CONFIG_ERROR

    def __init__(self, source: str, key: str | None, expected: str, found: object) -> None:
        self.source, self.key, self.expected, self.found = source, key, expected, found
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: expected {expected}, found {found!s}")


class UsageError(ServiceHostError):
    """The command line or the target cannot be used (same exit code as bad config)."""

    exit_code = ExitCode.CONFIG_ERROR


class StartupError(ServiceHostError):
    """A service failed, or did not become ready, while the host was starting."""

    exit_code = ExitCode.START_FAILURE


class StopIncomplete(ServiceHostError):
    """A requested stop ended at its deadline (or was forced) with work not finished."""

    exit_code = ExitCode.STOP_INCOMPLETE


class ControlRefused(ServiceHostError):
    """A service does not take a control it was sent (a pause, a reload, a code): it keeps running
    as it was. The caller (a manager's pause, reload, control) gets this error; the host logs it as
    one warning line, not as a failed hook with its traceback (a SIGHUP to a service that takes no
    reload is not a failure). ``reason`` is that line (default: the message)."""

    exit_code = ExitCode.CONFIG_ERROR
    reason: str = ""


class IllegalTransition(ServiceHostError):
    """A lifecycle move the transition table does not allow (a bug, not an input error)."""


class PlatformUnavailable(ServiceHostError):
    """The requested service manager is not present or not usable here."""

    exit_code = ExitCode.CONFIG_ERROR


class QueueClosed(Exception):
    """Raised by a closed :class:`~servicehost.workers.queues.ClosableQueue` (and the pools
    built on it) to a producer, or to a consumer once the queue is closed and empty."""

    accepted: int
    """Set when raised by ``submit_many``/``map``: how many items were taken before it."""


class QueueFull(Exception):
    """A put on a bounded queue could not complete before its timeout."""

    accepted: int
    """Set when raised by ``submit_many``/``map``: how many items were taken before it."""


def printable(text: str) -> str:
    """``text`` with every character that is not printable (a newline, a terminal escape, a lone
    surrogate: what input or another program chose) as its escape: one line, shown and never
    acted on by a terminal, and encodable on any console."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def error_message(exc: BaseException) -> str:
    """``str(exc)``, which never raises: an exception's ``__str__`` is user code, and one that
    raises (or returns what is not a string) is said so instead. Every failure path that names an
    exception user code raised goes through here or :func:`describe_error`: raising there had
    ended pool workers, and turned a service's failed start into a traceback."""
    try:
        return str(exc)
    except Exception as failed:  # a broken or hostile __str__
        return f"<its message could not be made: {type(failed).__name__}>"


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line of printable text (a control character or a lone surrogate
    as its escape), at most ``limit`` characters: how a status, a log line, an answer or a job's
    error history names an exception that user code raised (never raises)."""
    name = type(exc).__name__
    message = error_message(exc)
    text = " ".join(f"{name}: {message}".split()) if message else name
    text = printable(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"
