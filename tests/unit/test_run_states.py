import itertools

import pytest

from bot.domain.errors import InvalidTransition
from bot.domain.run import ACTIVE_STATES, FINAL_STATES, TRANSITIONS, RunState, check_transition


def test_the_happy_path_is_allowed():
    path = ["planned", "awaiting_approval", "approved", "running", "succeeded"]
    for current, target in itertools.pairwise(path):
        check_transition(1, RunState(current), RunState(target))


def test_a_failed_run_can_only_roll_back():
    assert TRANSITIONS[RunState.FAILED] == {RunState.ROLLING_BACK}


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_final_states_go_nowhere(final):
    for target in RunState:
        with pytest.raises(InvalidTransition):
            check_transition(7, final, target)


def test_refusal_says_what_the_run_is_and_how_to_look():
    with pytest.raises(InvalidTransition) as caught:
        check_transition(42, RunState.RUNNING, RunState.CANCELLED)
    assert "Run #42 is running" in str(caught.value)
    assert "status 42" in str(caught.value)


def test_an_interrupted_run_still_holds_its_instance():
    assert RunState.INTERRUPTED in ACTIVE_STATES
    assert not ACTIVE_STATES & FINAL_STATES


def test_every_state_has_an_entry():
    assert set(TRANSITIONS) == set(RunState)
