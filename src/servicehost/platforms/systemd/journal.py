"""journald: each log line on stderr carries a syslog priority prefix (``<3>`` error ... ``<7>``
debug), which journald reads (``SyslogLevelPrefix=``, on by default), so ``journalctl -p err`` works.

Only when stderr really is the journal (``$JOURNAL_STREAM`` names stderr's device and inode): run
in a terminal, the same service logs as it does in the foreground.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from ... import logs

#: syslog priorities journald reads from a "<N>" line prefix (SyslogLevelPrefix=, on by default).
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    for level, prio in PRIORITIES:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>LEVEL logger: message`` on every line (a traceback's lines keep the record's priority);
    no timestamp: journald adds its own."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in (super().format(record).splitlines() or [""]))


def stderr_is_journal(env: Mapping[str, str], fd: int = 2) -> bool:
    """True when ``fd`` is the stream systemd connected to the journal (``$JOURNAL_STREAM``)."""
    dev, sep, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def use_journal_prefixes(env: Mapping[str, str]) -> bool:
    """Switch servicehost's console (stderr) log handler to :class:`JournalFormatter` when stderr is
    the journal (a handler user code installed keeps its own format). Returns whether it did."""
    if not stderr_is_journal(env):
        return False
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and handler.stream is sys.stderr and logs.ours(handler):
            handler.setFormatter(JournalFormatter())
    return True



__all__ = ["PRIORITIES", "JournalFormatter", "priority", "stderr_is_journal", "use_journal_prefixes"]
