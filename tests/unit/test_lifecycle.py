import threading

import pytest

from servicehost.errors import IllegalTransition
from servicehost.lifecycle import TRANSITIONS, HostState, Lifecycle


def test_every_state_has_a_row_and_final_states_have_no_moves():
    assert set(TRANSITIONS) == set(HostState)
    for state in HostState:
        assert (not TRANSITIONS[state]) == state.is_final


def test_the_normal_path_with_a_pause():
    lc = Lifecycle()
    seen = []
    lc.subscribe(lambda old, new: seen.append((old, new)))
    path = [HostState.STARTING, HostState.RUNNING, HostState.PAUSING, HostState.PAUSED,
            HostState.RESUMING, HostState.RUNNING, HostState.STOPPING, HostState.STOPPED]
    for state in path:
        lc.move(state)
    assert [new for _, new in seen] == path
    assert seen[0][0] is HostState.CREATED


@pytest.mark.parametrize("old", list(HostState))
@pytest.mark.parametrize("new", list(HostState))
def test_every_move_outside_the_table_raises(old, new):
    lc = Lifecycle()
    lc._state = old
    if new in TRANSITIONS[old]:
        lc.move(new)
        assert lc.state is new
    else:
        with pytest.raises(IllegalTransition, match=f"{old.name} to {new.name}"):
            lc.move(new)
        assert lc.state is old


def test_a_stop_is_allowed_from_every_live_state():
    for state in HostState:
        if not state.is_final and state is not HostState.STOPPING:
            assert HostState.STOPPING in TRANSITIONS[state], state


def test_wait_for_wakes_on_move():
    lc = Lifecycle()
    t = threading.Timer(0.05, lc.move, args=(HostState.STARTING,))
    t.start()
    assert lc.wait_for({HostState.STARTING}, timeout=5)
    assert not lc.wait_for({HostState.RUNNING}, timeout=0.01)
