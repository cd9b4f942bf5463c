"""The connection engine: one engine for every exchange (keepalive, watchdogs, backoff, subscription restore,
make-before-break rotation, statistics and events).

Public surface (import from here):

- :class:`ManagedConnection`, :class:`EngineConfig` (``engine.connection``)
- :class:`ConnectionState`, :class:`StateMachine` (``engine.state``)
- :class:`ConnectionEvent`, :class:`ConnectionEventType`, :class:`Severity`, :class:`EventLog`
  (``engine.events``)
- :class:`BackoffPolicy`, :class:`Backoff` (``engine.backoff``)
- :class:`Watchdog`, :class:`WatchdogConfig`, :class:`StaleReport` (``engine.watchdog``)
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
from cryptolink.engine.stats import ConnectionStats, TotalStats, combine
from cryptolink.engine.subscriptions import SubscriptionRegistry
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
    "SubscriptionRegistry",
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
