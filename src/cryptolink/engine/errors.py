"""Typed errors of the connection engine (the whole tree of cryptolink's errors is drawn in
:mod:`cryptolink.errors`).

Library errors (``websockets``, ``OSError``, ``TimeoutError``) are mapped onto this tree with
``raise ... from exc`` so the original stays available as ``__cause__``.
"""

from __future__ import annotations

from cryptolink.errors import ConfigError, CryptolinkError

__all__ = [
    "ConfigError",
    "ConnectError",
    "ConnectionClosed",
    "CryptolinkError",
    "FrameTooLarge",
    "HandshakeTimeout",
    "IllegalTransition",
    "TransportError",
]


class IllegalTransition(CryptolinkError, RuntimeError):
    """A connection state change that the transition table does not allow.

    Attributes:
        source: the state the machine was in.
        target: the state that was asked for.
    """

    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"illegal connection state transition {source} -> {target}")
        self.source = source
        self.target = target


class TransportError(CryptolinkError):
    """A socket-level failure."""


class ConnectError(TransportError):
    """The connection could not be opened."""


class HandshakeTimeout(ConnectError):
    """The opening handshake did not complete within the transport's ``open_timeout_s``."""


class ConnectionClosed(TransportError):
    """The connection is closed.

    Attributes:
        code: WebSocket close code received or sent (1006 when the TCP connection dropped without one).
        reason: close reason text (may be empty).
    """

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        if code == 1006:
            text = "connection lost without a close frame (code 1006)"
        else:
            text = f"connection closed: code {code}" + (f" ({reason})" if reason else "")
        super().__init__(text)
        self.code = code
        self.reason = reason


class FrameTooLarge(TransportError):
    """A received frame was larger than the allowed maximum (WebSocket close code 1009).

    Attributes:
        limit_bytes: the limit in bytes that was exceeded.
    """

    def __init__(self, limit_bytes: int | None = None, detail: str = "") -> None:
        super().__init__(f"frame larger than {limit_bytes} bytes {detail}".rstrip())
        self.limit_bytes = limit_bytes
