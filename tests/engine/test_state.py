import itertools

import pytest

from cryptolink.engine.errors import IllegalTransition
from cryptolink.engine.state import TRANSITIONS, ConnectionState, StateMachine

S = ConnectionState
LEGAL = [(a, b) for a in S for b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a, b in itertools.product(S, S) if b not in TRANSITIONS[a]]


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_every_legal_transition_is_allowed_and_reported(source: S, target: S) -> None:
    seen: list[tuple[S, S, str]] = []
    sm = StateMachine(lambda a, b, r: seen.append((a, b, r)), initial=source)
    assert sm.transition(target, "why") is source
    assert sm.state is target
    assert seen == [(source, target, "why")]


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_every_illegal_transition_raises(source: S, target: S) -> None:
    seen: list[object] = []
    sm = StateMachine(lambda *a: seen.append(a), initial=source)
    with pytest.raises(IllegalTransition) as info:
        sm.transition(target)
    assert sm.state is source and not seen
    assert info.value.source == source and info.value.target == target


def test_table_shape() -> None:
    assert TRANSITIONS[S.STOPPED] == frozenset()  # terminal
    assert TRANSITIONS[S.FAILED] == {S.RECONNECTING, S.STOPPED}  # only an explicit restart leaves failed
    assert S.FAILED not in TRANSITIONS[S.CONNECTED]  # failed only after attempts, from reconnecting
    assert all(s not in TRANSITIONS[s] for s in S)  # no self-transitions
    assert len(ILLEGAL) > len(LEGAL)
