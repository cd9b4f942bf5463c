"""Every error cryptolink raises on purpose derives from :class:`CryptolinkError`.

The whole tree (each class lives in the module named on its right)::

    CryptolinkError
    ├── ConfigError (also ValueError)        bad configuration or arguments; names every wrong field   errors
    │   └── BadSymbol                        a symbol the exchange does not list                       feed
    ├── IllegalTransition (also RuntimeError)
    │                                        a state change the transition table forbids: a bug        engine.errors
    ├── TransportError                       anything that went wrong on a socket                      engine.errors
    │   ├── ConnectError                     the connection could not be opened                        engine.errors
    │   │   └── HandshakeTimeout             TCP accepted, WebSocket handshake never completed         engine.errors
    │   ├── ConnectionClosed                 an open connection ended (``code``, ``reason``)           engine.errors
    │   └── FrameTooLarge                    a frame above ``ConnectionPolicy.max_frame_bytes``        engine.errors
    ├── DecodeError (also ValueError)        a received frame or REST body could not be parsed         exchanges.base
    │   └── InflateRefused                   a compressed frame corrupt or beyond the inflate bound    exchanges.base
    ├── RestError                            a REST request failed (status, ``Retry-After``)           rest.client
    ├── UnknownMember (also KeyError)        no REST member of that name                               rest.manager
    ├── UnknownGroup (also KeyError)         no REST group of that name                                rest.manager
    ├── NoMemberAvailable                    every member of a REST group offline or in maintenance    rest.manager
    ├── MemberClosed                         a request reached a REST member a reload had closed       rest.managed
    ├── OutputDirError (also OSError)        an output directory cannot be written                     sinks.outdir
    ├── CaptureWriteError (also OSError)     a capture file cannot be created or written               record
    ├── SubscriberClosed                     reading a closed, drained bus subscriber                  bus
    ├── StatusBindError                      the status API's address cannot be bound                  status.server
    ├── GuardClosed (also RuntimeError)      waiting on a closed guard or a stopped manager            guard
    ├── LineFull                             a rate limiter's waiting line is full                     ratelimit.line
    ├── NatsError                            NATS unreachable at start, or a stream that differs       errors
    │   ├── NatsUnavailable (also ConnectionError)  no NATS server answered a reader in time          consumer.reader
    │   └── ReaderError                      a stream or durable consumer unusable as asked            consumer.reader
    ├── MalformedMessage (also ValueError)   a NATS message that is not a cryptolink event             consumer.decode
    ├── TailError (also ValueError)          a subject or option ``cryptolink tail`` cannot use        consumer.tail
    ├── ClusterError                         a lease bucket or worker manager unusable for scale-out   cluster.leases
    │   ├── LeaseStoreError                  a lease operation failed on NATS (timeout, unreachable)   cluster.leases
    │   └── LeaseLost                        a renewal refused: the lease key moved on (fencing)       cluster.leases
    └── DemoOutputError                      the demo's output directory holds foreign files           demo

Library errors (``websockets``, ``aiohttp``, ``OSError``, ``TimeoutError``, ``msgspec``) are mapped onto this
tree with ``raise ... from exc``, so the original stays available as ``__cause__``. The simulator
(:mod:`cryptolink.simulator`) imports nothing of the client and has its own errors.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ConfigError", "CryptolinkError", "NatsError"]


class CryptolinkError(Exception):
    """Base class of every error cryptolink raises on purpose."""


class ConfigError(CryptolinkError, ValueError):
    """A configuration or an argument is invalid.

    Raised with one message (``ConfigError("unknown market 'x'")``) or with every problem of a configuration at
    once (``ConfigError([(path, message), ...], source)``).

    Attributes:
        problems: ``(path, message)`` pairs, one per wrong field, e.g.
            ``("exchanges.binance.symbols[1]", "'BTCUSDT' is not a unified spot symbol ...")``; a single
            message is ``[("", message)]``.
        source: file the configuration came from, if any.

    ``str(error)`` is the message, or for a problem list a head line and every problem, one per line.
    """

    def __init__(self, problems: str | Sequence[tuple[str, str]], source: str | None = None) -> None:
        self.source = source
        if isinstance(problems, str):
            self.problems = [("", problems)]
            super().__init__(problems)
            return
        self.problems = list(problems)
        where = f" in {source}" if source else ""
        count = len(self.problems)
        head = f"invalid configuration{where}: {count} problem{'s' if count != 1 else ''}"
        lines = [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in self.problems]
        super().__init__("\n".join([head, *lines]))


class NatsError(CryptolinkError):
    """NATS cannot be used as configured: no server answered at start (``nats.require_at_start``), or the
    JetStream stream is missing (``streams: check``), cannot be created, or differs from ``nats.stream`` (the
    message names every differing setting). The text never holds a password, token or credentials."""
