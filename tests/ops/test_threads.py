"""The thread dump (``ops/threads.py``): real threads, blocked at a known depth; the dump keeps the
innermost frames, as many a thread as the carrier's reply limit allows, and says when it cut."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from servicehost.ops.threads import THREAD_FRAMES, format_threads, thread_dump
from servicehost.platforms.control import MAX_REPLY, _fits_in_reply

DEPTH = 40  # frames of the blocked thread's own, below Thread.run()


def _descend(n: int, gate: threading.Event) -> None:
    if n:
        _descend(n - 1, gate)
    else:
        gate.wait(60)  # hang guard only: the fixture sets it


def _blocked(thread: threading.Thread) -> bool:
    """``thread`` is in its gate's wait (its innermost Python frame is ``Condition.wait``)."""
    frame = sys._current_frames().get(thread.ident or 0)
    return frame is not None and frame.f_code.co_name == "wait" and frame.f_back is not None \
        and frame.f_back.f_code.co_name == "wait"


@pytest.fixture
def deep() -> Iterator[threading.Thread]:
    gate = threading.Event()
    thread = threading.Thread(target=_descend, args=(DEPTH, gate), name="deep-one", daemon=True)
    thread.start()
    until = time.monotonic() + 60  # hang guard only
    while not _blocked(thread):
        assert time.monotonic() < until, "the thread never reached its wait"
        time.sleep(0.001)
    try:
        yield thread
    finally:
        gate.set()
        thread.join(60)


def _stack(dump: dict[str, Any], name: str) -> list[list[Any]]:
    return next(t["stack"] for t in dump["threads"] if t["name"] == name)


def test_the_whole_stack_when_it_fits_innermost_last(deep):
    dump = thread_dump(lambda result: True)
    assert dump["frames_per_thread"] == THREAD_FRAMES[0]
    stack = _stack(dump, "deep-one")
    assert [frame[2] for frame in stack].count("_descend") == DEPTH + 1  # 41 of them, within 64 frames
    # Innermost last: Event.wait, then the Condition.wait it blocks in.
    assert [frame[2] for frame in stack[-3:]] == ["_descend", "wait", "wait"], stack
    names = [t["name"] for t in dump["threads"]]
    assert names[0] == "MainThread" and "deep-one" in names
    assert [t["answering"] for t in dump["threads"] if t["name"] == "MainThread"] == [True]


def test_fewer_frames_a_thread_when_the_whole_dump_does_not_fit(deep):
    tried = []

    def fits(result: dict[str, Any]) -> bool:
        tried.append(result["frames_per_thread"])
        return all(len(t["stack"]) <= 4 for t in result["threads"])

    dump = thread_dump(fits)
    assert tried == [64, 16, 4] and dump["frames_per_thread"] == 4
    stack = _stack(dump, "deep-one")
    assert [frame[2] for frame in stack] == ["_descend", "_descend", "wait", "wait"], stack  # the innermost four
    text = "\n".join(format_threads(dump))
    assert "(only the innermost 4 frames of each thread: the whole dump is larger than one reply)" in text
    block = next(b for b in text.split("\n\n") if b.startswith("Thread deep-one"))
    assert block.count("in _descend") == 2 and block.count("in wait") == 2, block

    nothing = thread_dump(lambda result: False)
    assert nothing["frames_per_thread"] == 0 and all(t["stack"] == [] for t in nothing["threads"])


def test_the_channel_measures_a_dump_against_its_reply_limit():
    assert _fits_in_reply({"threads": [], "frames_per_thread": 64})
    assert not _fits_in_reply({"threads": [{"stack": [["x" * 1024, 1, "f", ""]] * (MAX_REPLY // 1024)}]})
