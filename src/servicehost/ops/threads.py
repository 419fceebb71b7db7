"""A running service's thread dump (the control channel's ``threads``; ``servicehost threads NAME``):
every thread's name and stack, taken in the service (:func:`thread_dump`) and shown as a Python
traceback shows a stack (:func:`format_threads`). The channel imports it on the first request.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Frames shown per thread, innermost kept, fewer when the whole dump would not fit in one reply.
THREAD_FRAMES = (64, 16, 4, 1)


def thread_dump(fits: Callable[[dict[str, Any]], bool], frames: Sequence[int] = THREAD_FRAMES) -> dict[str, Any]:
    """Every thread's name and stack (innermost frame last), as ``threads`` answers: the most
    frames per thread (``frames``, tried in order) for which ``fits(answer)`` (the carrier's reply
    limit)."""

    current = threading.get_ident()
    named = {t.ident: t for t in threading.enumerate()}
    stacks: list[dict[str, Any]] = []
    for ident, frame in sys._current_frames().items():
        summary = traceback.StackSummary.extract(traceback.walk_stack(frame), limit=max(frames))
        summary.reverse()  # outermost first, as a traceback reads
        thread = named.get(ident)
        stacks.append({
            "name": thread.name if thread is not None else f"(not started by threading: {ident})",
            "ident": ident, "native_id": getattr(thread, "native_id", None),
            "daemon": thread.daemon if thread is not None else None, "answering": ident == current,
            "stack": [[f.filename, f.lineno, f.name, f.line or ""] for f in summary],
        })
    stacks.sort(key=lambda t: (not t["name"] == "MainThread", t["name"]))
    for limit in frames:
        result = {"threads": [{**t, "stack": t["stack"][-limit:]} for t in stacks],
                  "frames_per_thread": limit}
        if fits(result):
            return result
    return {"threads": [{**t, "stack": []} for t in stacks], "frames_per_thread": 0}


def format_threads(dump: Mapping[str, Any]) -> list[str]:
    """``threads``' answer as text, one block per thread, as a Python traceback shows a stack."""
    lines = []
    for thread in dump.get("threads", []):
        notes = [f"native id {thread.get('native_id')}"] if thread.get("native_id") is not None else []
        notes += ["daemon"] if thread.get("daemon") else []
        notes += ["answering this request"] if thread.get("answering") else []
        lines.append(f"Thread {thread.get('name')!s}" + (f" ({', '.join(notes)})" if notes else "") + ":")
        for filename, lineno, function, code in thread.get("stack", []):
            lines.append(f'  File "{filename}", line {lineno}, in {function}')
            if code:
                lines.append(f"    {code}")
        lines.append("")
    limit = dump.get("frames_per_thread")
    if isinstance(limit, int) and limit < THREAD_FRAMES[0]:
        lines.append(f"(only the innermost {limit} frames of each thread: the whole dump is larger than one reply)")
    return lines
