"""The connection state machine: one enum, one transition table, one guarded ``transition`` method.

States (:class:`ConnectionState`)::

    disconnected --start--> connecting --open--> connected <--healthy/degraded--> unstable
                                 |                   |                              |
                                 +--fail--> reconnecting <-----session ended--------+
                                                 |  ^
                                  max attempts   v  | reconnect() (explicit restart)
                                              failed
    any state except stopped --stop()--> stopped   (terminal)

- ``connected``: the socket is open and the subscriptions are (being) restored.
- ``unstable``: connected but delivering nothing: every subscription is silent past its data watchdog. Back
  to ``connected`` as soon as data flows. (One silent subscription, a book that is not live, or a low quality
  score are reported on their own: subscription and book states, the score, events.)
- ``reconnecting``: between sessions, waiting out a backoff delay or opening the next socket.
- ``failed``: ``BackoffPolicy.max_attempts`` consecutive attempts failed; only an explicit ``reconnect()``
  leaves it (to ``reconnecting``).
- ``stopped``: terminal; nothing leaves it.

Illegal transitions are bugs and raise :class:`~cryptolink.engine.errors.IllegalTransition`; a transition to
the current state is illegal too (callers check first). Every transition is reported to the listener given to
:class:`StateMachine`, which turns it into a ``state_changed``
:class:`~cryptolink.engine.events.ConnectionEvent`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

from cryptolink.engine.errors import IllegalTransition

__all__ = ["ACTIVE_STATES", "TRANSITIONS", "ConnectionState", "IllegalTransition", "StateMachine"]


class ConnectionState(StrEnum):
    """Status vocabulary of one logical connection."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    UNSTABLE = "unstable"
    FAILED = "failed"
    STOPPED = "stopped"


_S = ConnectionState

TRANSITIONS: Mapping[ConnectionState, frozenset[ConnectionState]] = {
    _S.DISCONNECTED: frozenset({_S.CONNECTING, _S.STOPPED}),
    _S.CONNECTING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.FAILED, _S.STOPPED}),
    _S.CONNECTED: frozenset({_S.UNSTABLE, _S.RECONNECTING, _S.STOPPED}),
    _S.UNSTABLE: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.STOPPED}),
    _S.RECONNECTING: frozenset({_S.CONNECTED, _S.FAILED, _S.STOPPED}),
    _S.FAILED: frozenset({_S.RECONNECTING, _S.STOPPED}),
    _S.STOPPED: frozenset(),
}
"""Allowed moves: ``TRANSITIONS[source]`` is the set of legal targets."""

ACTIVE_STATES: frozenset[ConnectionState] = frozenset({_S.CONNECTED, _S.UNSTABLE})
"""States with an open primary socket (counted as uptime)."""

TransitionListener = Callable[[ConnectionState, ConnectionState, str], None]


class StateMachine:
    """Holds the current state and enforces :data:`TRANSITIONS`.

    Args:
        on_transition: called as ``on_transition(source, target, reason)`` after every successful transition.
        initial: starting state (default ``disconnected``).
    """

    __slots__ = ("_on_transition", "_state")

    def __init__(
        self,
        on_transition: TransitionListener | None = None,
        initial: ConnectionState = ConnectionState.DISCONNECTED,
    ) -> None:
        self._state = initial
        self._on_transition = on_transition

    @property
    def state(self) -> ConnectionState:
        """The current state."""
        return self._state

    def can(self, target: ConnectionState) -> bool:
        """Whether ``target`` is a legal move from the current state."""
        return target in TRANSITIONS[self._state]

    def transition(self, target: ConnectionState, reason: str = "") -> ConnectionState:
        """Move to ``target`` and return the previous state.

        Raises:
            IllegalTransition: ``target`` is not in ``TRANSITIONS[current]``.
        """
        source = self._state
        if target not in TRANSITIONS[source]:
            raise IllegalTransition(source, target)
        self._state = target
        if self._on_transition is not None:
            self._on_transition(source, target, reason)
        return source
