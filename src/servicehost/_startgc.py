"""Fewer garbage collections while a service starts.

Starting a service allocates a few hundred thousand objects that all live on (modules, classes,
settings, the workers' threads and queues), and Python's cyclic collector, which by default runs
every 700 net allocations, walks them again and again: about 11 M of the 235 M instructions from
``python -m servicehost run`` to the ready line (bench/run.py's start row). From its first line
(``python -m servicehost``) or the call of ``main`` until the service is ready, a young-generation
collection runs every :data:`THRESHOLD` allocations instead, so memory stays bounded; once the
service is ready (or the command ends) the threshold is put back — unless something else changed
it meanwhile, which is then left as it was set.
"""

from __future__ import annotations

import gc

THRESHOLD = 50_000
_saved: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (before, ours) while deferred


def defer() -> None:
    """Collect every :data:`THRESHOLD` allocations until :func:`restore` (idempotent). A threshold
    already at least that (set by the program) is left alone."""
    global _saved
    if _saved is not None:
        return
    before = gc.get_threshold()
    if before[0] == 0 or before[0] >= THRESHOLD:
        return
    ours = (THRESHOLD, *before[1:])
    gc.set_threshold(*ours)
    _saved = (before, ours)


def restore() -> None:
    """Put back the threshold :func:`defer` found, if it is still the one it set (idempotent)."""
    global _saved
    if _saved is None:
        return
    before, ours = _saved
    _saved = None
    if gc.get_threshold() == ours:
        gc.set_threshold(*before)
