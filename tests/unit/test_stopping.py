import threading

from servicehost.stopping import Deadline, StopToken


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down_and_never_goes_negative():
    clock = FakeClock()
    d = Deadline.after(2.0, clock)
    assert d.remaining() == 2.0
    clock.now += 1.5
    assert d.remaining() == 0.5 and not d.expired
    assert d.remaining(cap=0.2) == 0.2
    clock.now += 5
    assert d.remaining() == 0.0 and d.expired


def test_never_deadline():
    d = Deadline.never()
    assert d.remaining() is None and not d.expired
    assert d.remaining(cap=3.0) == 3.0
    assert Deadline.after(None).at is None


def test_earliest():
    clock = FakeClock()
    a, b = Deadline.after(1, clock), Deadline.after(2, clock)
    assert a.earliest(b) is a and b.earliest(a) is a
    assert Deadline.never().earliest(a) is a and a.earliest(Deadline.never()) is a


def test_token_sets_deadline_once_and_runs_callbacks_once():
    clock = FakeClock()
    token = StopToken(clock)
    calls = []
    token.on_stop(lambda: calls.append("a"))
    unregister = token.on_stop(lambda: calls.append("never"))
    unregister()
    assert token.deadline.remaining() is None and not token.stop_requested
    assert token.request_stop(10, "first")
    assert not token.request_stop(1, "second")
    assert token.stop_requested and token.reason == "first"
    assert token.deadline.remaining() == 10
    assert calls == ["a"]
    token.on_stop(lambda: calls.append("late"))  # runs at once: the stop was already requested
    assert calls == ["a", "late"]


def test_wait_returns_true_when_stopped_from_another_thread():
    token = StopToken()
    assert token.wait(0.01) is False
    threading.Timer(0.05, token.request_stop, args=(5,)).start()
    assert token.wait(10) is True


def test_force_ends_the_graceful_phase():
    clock = FakeClock()
    token = StopToken(clock)
    token.request_stop(30)
    assert not token.forced
    token.force()
    assert token.forced and token.wait_forced(0)
    # the deadline passing is "forced" as well
    t2 = StopToken(clock)
    t2.request_stop(1)
    clock.now += 2
    assert t2.forced
