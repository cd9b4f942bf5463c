"""Connection events: what happened to a connection, when, how bad, and the bounded log that keeps them.

A :class:`ConnectionEvent` is an immutable record. Events are emitted on every state transition and on the
notable moments of a connection's life (connect, disconnect, reconnect attempts, keepalive deaths, stale
subscriptions, rejections, rotations, server notices, quality changes). ``data_received`` is *sampled*: at
most one per ``EngineConfig.data_event_interval_s`` per connection, never one per frame.

:class:`EventLog` keeps the last ``maxlen`` (default 100) events of one connection in a ring buffer and
forwards each new event to its listeners; a listener that raises is isolated (counted in ``listener_errors``)
and never affects the connection.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = ["ConnectionEvent", "ConnectionEventType", "EventListener", "EventLog", "Severity"]

_log = logging.getLogger(__name__)


class ConnectionEventType(StrEnum):
    """Kinds of connection events."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECT_ATTEMPT = "reconnect_attempt"
    RECONNECT_SUCCESS = "reconnect_success"
    RECONNECT_FAILED = "reconnect_failed"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    DATA_RECEIVED = "data_received"
    ERROR = "error"
    QUALITY_DEGRADED = "quality_degraded"
    QUALITY_IMPROVED = "quality_improved"
    STALE_SUBSCRIPTION = "stale_subscription"
    SUBSCRIPTION_REJECTED = "subscription_rejected"
    ROTATION_STARTED = "rotation_started"
    ROTATION_COMPLETED = "rotation_completed"
    SERVER_NOTICE = "server_notice"
    STATE_CHANGED = "state_changed"


class Severity(IntEnum):
    """How much an event matters: 1 informational ... 4 needs a human now."""

    INFO = 1
    WARNING = 2
    ERROR = 3
    CRITICAL = 4


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One event of one connection.

    Attributes:
        type: what happened.
        severity: :class:`Severity`.
        time_ns: wall-clock time, epoch ns (from the injected clock).
        monotonic_s: monotonic time, s (from the injected clock), for ordering and intervals.
        connection_id: the connection's id.
        exchange: exchange id (``binance``, ``okx``).
        description: human-readable text.
        error: error message, if the event reports one.
        latency_ms: a latency tied to the event (ping round trip, reconnect duration, rotation duration), ms.
        attempt: reconnect attempt number (1 = the first, immediate attempt), if relevant.
        feed: the configuration entry the connection belongs to (``binance-perp``).
        stream / symbol: the subscription the event is about (stale or rejected subscriptions: its channel
            ``trades``/``ticker``/``book`` and unified symbol), if any.
    """

    type: ConnectionEventType
    severity: Severity
    time_ns: int
    monotonic_s: float
    connection_id: str
    exchange: str
    description: str = ""
    error: str | None = None
    latency_ms: float | None = None
    attempt: int | None = None
    feed: str = ""
    stream: str | None = None
    symbol: str | None = None


EventListener = Callable[[ConnectionEvent], None]


class EventLog:
    """Bounded ring of the latest events of one connection, plus listeners.

    Args:
        maxlen: number of events kept (oldest dropped first); must be >= 1.

    Raises:
        ValueError: ``maxlen < 1``.
    """

    __slots__ = ("_events", "_listeners", "dropped", "listener_errors", "total")

    def __init__(self, maxlen: int = 100) -> None:
        if maxlen < 1:
            raise ValueError(f"EventLog maxlen must be >= 1, got {maxlen}")
        self._events: deque[ConnectionEvent] = deque(maxlen=maxlen)
        self._listeners: list[EventListener] = []
        self.total = 0
        """Events ever appended."""
        self.dropped = 0
        """Events pushed out of the ring by newer ones."""
        self.listener_errors = 0
        """Listener calls that raised."""

    @property
    def maxlen(self) -> int:
        """Capacity of the ring."""
        maxlen = self._events.maxlen
        assert maxlen is not None
        return maxlen

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for every future event."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def append(self, event: ConnectionEvent) -> None:
        """Record ``event`` and notify listeners (their exceptions are logged and counted, never raised)."""
        if len(self._events) == self.maxlen:
            self.dropped += 1
        self._events.append(event)
        self.total += 1
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                self.listener_errors += 1
                _log.exception("connection event listener failed on %s", event.type)

    def events(self) -> list[ConnectionEvent]:
        """The kept events, oldest first (a copy)."""
        return list(self._events)

    def __len__(self) -> int:
        return len(self._events)
