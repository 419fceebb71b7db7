"""Fewer collections while a service starts (``_startgc.py``): deferred from the command's start,
put back once the service is ready or the command ends, and never over a program's own setting."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from servicehost import Service, _startgc, logs
from servicehost.cli import run_cli


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[tuple[int, ...]]:
    before = gc.get_threshold()
    _startgc.restore()
    yield before
    _startgc.restore()
    gc.set_threshold(*before)


def test_defer_then_restore(thresholds: tuple[int, ...]) -> None:
    _startgc.defer()
    assert gc.get_threshold() == (_startgc.THRESHOLD, *thresholds[1:])
    _startgc.defer()  # idempotent: restore still puts back the first threshold
    _startgc.restore()
    assert gc.get_threshold() == thresholds
    _startgc.restore()
    assert gc.get_threshold() == thresholds


def test_a_threshold_changed_meanwhile_is_left_as_it_was_set(thresholds: tuple[int, ...]) -> None:
    _startgc.defer()
    gc.set_threshold(1234, 5, 6)
    _startgc.restore()
    assert gc.get_threshold() == (1234, 5, 6)


@pytest.mark.parametrize("program", [(0, 10, 10), (100_000, 10, 10)], ids=["collection off", "already rarer"])
def test_a_program_setting_is_never_overridden(program: tuple[int, int, int]) -> None:
    gc.set_threshold(*program)
    _startgc.defer()
    assert gc.get_threshold() == program
    _startgc.restore()
    assert gc.get_threshold() == program


class Seen(Service):
    name = "gc-seen"
    during_start: tuple[int, ...] = ()

    def start(self) -> None:
        Seen.during_start = gc.get_threshold()

    def run(self, stop: object) -> None:
        return  # the host stops once run returns


def test_a_run_defers_while_starting_and_puts_back(thresholds: tuple[int, ...], tmp_path) -> None:
    try:
        code = run_cli(["run", "--state-dir", str(tmp_path), "--log-file", "none"], Seen)
    finally:
        logs.release()  # the run's console handler: off the root logger, for the tests after this one
    assert code == 0
    assert Seen.during_start == (_startgc.THRESHOLD, *thresholds[1:])
    assert gc.get_threshold() == thresholds
