"""The restart policy every manager applies, written once: which exits restart, and how long each
restart waits (``--restart-delay``).

A crash (exit 1 CRASH, exit 5 HUNG, or killed by a signal) restarts the service; every other exit
does not (0, 4: a stop; 2, 3: a restart would only fail again; ``entry.EXIT_STATUS``). The first
restart after a crash waits ``restart_delay`` seconds; each further crash in a row doubles the
wait, up to :data:`MAX_DELAY` (or ``restart_delay`` itself when that is longer). A run that lasted
:data:`HEALTHY` seconds ends the row: its crash waits ``restart_delay`` again. ``--restart-delay
0`` restarts at once, every time.

How each manager is told (pure functions here; the managers render them):

    supervisord  servicehost waits itself: a restarted process sleeps :func:`delay` before it starts,
                 and a stop request ends the sleep at once (``supervisord/backoff.py``)
    systemd      RestartSec=restart_delay; from systemd 254 also RestartSteps=:func:`steps` and
                 RestartMaxDelaySec=:func:`max_delay`, which grow the wait the same way (systemd
                 starts the steps again when the service is started by hand, not after a healthy
                 run). Before 254 every restart waits RestartSec= (``systemd/unit.py``)
    the SCM      failure actions, one restart per step of :func:`delays` (the last one repeats);
                 the failure count resets after :func:`reset_period` seconds without a failure
                 (``windows/service_config.py``)
"""

from __future__ import annotations

import math

#: The longest wait before a restart (seconds), unless restart_delay is longer.
MAX_DELAY = 60.0
#: A run at least this long (seconds) ends a row of crashes.
HEALTHY = 60.0
#: The first systemd version with RestartSteps= and RestartMaxDelaySec=.
SYSTEMD_STEPS_VERSION = 254

__all__ = ["HEALTHY", "MAX_DELAY", "SYSTEMD_STEPS_VERSION", "delay", "delays", "max_delay", "reset_period",
           "steps"]


def max_delay(restart_delay: float) -> float:
    """The cap: :data:`MAX_DELAY`, or ``restart_delay`` when that is longer."""
    return float(max(MAX_DELAY, restart_delay))


def delay(restart_delay: float, crashes: int) -> float:
    """Seconds to wait before the restart that follows the ``crashes``-th crash in a row (0 for none)."""
    if crashes < 1:
        return 0.0
    return min(max_delay(restart_delay), restart_delay * 2.0 ** min(crashes - 1, 64))


def delays(restart_delay: float) -> list[float]:
    """Each wait of a row of crashes until it stops growing (the last one repeats)."""
    out = [delay(restart_delay, 1)]
    while out[-1] < max_delay(restart_delay) and out[-1] > 0:
        out.append(delay(restart_delay, len(out) + 1))
    return out


def steps(restart_delay: float) -> int:
    """systemd's RestartSteps=: how many restarts grow RestartSec= to :func:`max_delay` by at most
    a doubling each (0: the wait never grows)."""
    cap = max_delay(restart_delay)
    if restart_delay < 0.001 or restart_delay >= cap:  # under 1 ms: RestartSec=0, nothing to grow
        return 0
    return math.ceil(math.log2(cap / restart_delay))


def reset_period(restart_delay: float) -> int:
    """The SCM's ResetPeriod (whole seconds): the longest wait plus a healthy run without a failure."""
    return math.ceil(max_delay(restart_delay) + HEALTHY)
