"""The connection engine: one engine for every exchange (keepalive, watchdogs, backoff, subscription restore,
make-before-break rotation, statistics and events).

Layers (a module imports only from the layers below it; nothing imports ``connection``)::

    connection      ManagedConnection: state machine, backoff, gate permits, statistics, the primary's
                    subscription registry, its sessions (primary + rotation candidate), rotation, the timer task
    session         Session: one socket, its reader/sends/pings (TaskOwner), token bucket and hourly quota,
                    its registry and decoder; reports through SessionHost and SessionCounters
    timer_core      TimerCore / KeepaliveTimer: sans-I/O ``tick(now) -> actions`` (keepalive, watchdogs,
                    ack timeouts, rotation deadline, housekeeping)
    rotation        when to rotate (pure) and the wait helper
    tasks           TaskOwner: one owner for a connection's or a session's tasks
    state, backoff, watchdog, quality, throttle, subscriptions, stats, events, gate, transport,
    transport_picows, errors    leaves (sans-I/O where they can be)

Who owns what: the connection owns the state machine, backoff, gate, quality tracker, event log, timer core
(which owns the data watchdogs and the stale set), the desired-subscription registry and the list of sessions;
a session owns its socket, tasks, rate limiters, decoder, its registry view and flow expectations; a timer
core owns one keepalive timer per open socket. Two pieces of state are written by more than one class, each
by design: :class:`~cryptolink.engine.session.SessionCounters` (owned by the connection, written by its
sessions' readers, read by ``stats()``) and a session's
:class:`~cryptolink.engine.subscriptions.SubscriptionRegistry` (what is wanted is written by the connection:
``want``, ``drop``, ``replay``; what the exchange answered by the session's reader: ``sent``, ``on_ack``,
``on_rejected``).

Public surface (import from here):

- :class:`ManagedConnection`, :class:`EngineConfig` (``engine.connection``)
- :class:`ConnectionState`, :class:`StateMachine` (``engine.state``)
- :class:`ConnectionEvent`, :class:`ConnectionEventType`, :class:`Severity`, :class:`EventLog`
  (``engine.events``)
- :class:`BackoffPolicy`, :class:`Backoff` (``engine.backoff``)
- :class:`Watchdog`, :class:`WatchdogConfig`, :class:`StaleReport` (``engine.watchdog``)
- :class:`TimerCore` and its actions (``engine.timer_core``)
- :class:`ConnectionQuality`, :class:`QualityConfig`, :class:`QualityTracker` (``engine.quality``)
- :class:`ConnectionStats`, :class:`TotalStats`, :func:`combine` (``engine.stats``)
- :class:`SubscriptionRegistry` (``engine.subscriptions``)
- :class:`Transport`, :class:`TransportSession`, :class:`WebsocketsTransport`, :func:`default_transport`
  (``engine.transport``), :class:`PicowsTransport` (``engine.transport_picows``)
- the error tree (``engine.errors``)
"""

from cryptolink.engine.backoff import Backoff, BackoffPolicy
from cryptolink.engine.connection import EngineConfig, ManagedConnection
from cryptolink.engine.errors import (
    ConfigError,
    ConnectError,
    ConnectionClosed,
    CryptolinkError,
    FrameTooLarge,
    HandshakeTimeout,
    IllegalTransition,
    TransportError,
)
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, EventLog, Severity
from cryptolink.engine.quality import ConnectionQuality, QualityConfig, QualityTracker
from cryptolink.engine.state import ConnectionState, StateMachine
from cryptolink.engine.stats import ConnectionStats, StreamStatus, TotalStats, combine
from cryptolink.engine.subscriptions import SubscriptionRegistry
from cryptolink.engine.timer_core import TimerCore
from cryptolink.engine.transport import Transport, TransportSession, WebsocketsTransport, default_transport
from cryptolink.engine.transport_picows import PicowsTransport
from cryptolink.engine.watchdog import StaleReport, Watchdog, WatchdogConfig

__all__ = [
    "Backoff",
    "BackoffPolicy",
    "ConfigError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionEvent",
    "ConnectionEventType",
    "ConnectionQuality",
    "ConnectionState",
    "ConnectionStats",
    "CryptolinkError",
    "EngineConfig",
    "EventLog",
    "FrameTooLarge",
    "HandshakeTimeout",
    "IllegalTransition",
    "ManagedConnection",
    "PicowsTransport",
    "QualityConfig",
    "QualityTracker",
    "Severity",
    "StaleReport",
    "StateMachine",
    "StreamStatus",
    "SubscriptionRegistry",
    "TimerCore",
    "TotalStats",
    "Transport",
    "TransportError",
    "TransportSession",
    "Watchdog",
    "WatchdogConfig",
    "WebsocketsTransport",
    "combine",
    "default_transport",
]
