"""Decoding one NATS message of the cryptolink stream: subject + payload -> event.

A message published by the NATS sink has the subject ``<root>.<channel>.<exchange>.<symbol token>``
(:mod:`cryptolink.sinks.nats_subjects`; the root may have several tokens, e.g. ``acme.md``) and the payload
``msgspec.json.encode(event)`` of a :class:`~cryptolink.models.Trade` (channel ``trades``),
:class:`~cryptolink.models.Ticker` (``ticker``), :class:`~cryptolink.models.BookUpdate` (``book``) or
:class:`~cryptolink.models.Gap` (``gaps``). Prices and sizes travel as JSON strings and come back as exact
:class:`~decimal.Decimal` values, as :func:`cryptolink.sinks.jsonl.read_jsonl` decodes them.

The subject is checked against the payload: the channel picks the type, and the subject the decoded event would
be published on must be the subject it came on (same exchange and symbol). Anything else is a
:class:`MalformedMessage` naming the subject and the reason; the payload itself is never quoted in full (at most
its first :data:`PREVIEW_BYTES` bytes), so a huge or binary payload cannot flood a log line.
"""

from __future__ import annotations

import msgspec

from cryptolink.errors import CryptolinkError
from cryptolink.models import BookUpdate, Gap, Ticker, Trade
from cryptolink.sinks.jsonl import EVENT_DECODERS
from cryptolink.sinks.nats_subjects import subject as subject_of

__all__ = ["CHANNELS", "PREVIEW_BYTES", "Event", "MalformedMessage", "decode", "split_subject"]

Event = Trade | Ticker | BookUpdate | Gap
"""What the stream carries."""

PREVIEW_BYTES = 120
"""Most payload bytes quoted in a :class:`MalformedMessage` text."""

_DECODERS = EVENT_DECODERS  # the payload is exactly a JSONL line

CHANNELS: tuple[str, ...] = tuple(_DECODERS)
"""The channel tokens a subject may carry: ``trades``, ``ticker``, ``book``, ``gaps``."""


class MalformedMessage(CryptolinkError, ValueError):
    """A message that is not a cryptolink event: unknown channel, a subject of the wrong shape, a payload that
    does not decode as the channel's type, or a payload whose exchange/symbol does not match its subject.

    Attributes:
        subject: the message's subject.
        reason: what is wrong (no secrets: built from the subject and the decoder's message only).
    """

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"{subject}: {reason}")
        self.subject = subject
        self.reason = reason


def split_subject(subject: str, root: str | None = None) -> tuple[str, str, str, str]:
    """``(root, channel, exchange, symbol token)`` of a cryptolink subject.

    Args:
        subject: ``<root>.<channel>.<exchange>.<symbol token>``.
        root: the expected root (``cryptolink``, ``acme.md``); ``None`` accepts any root of at least one token.

    Raises:
        MalformedMessage: fewer than four tokens, an empty token, another root than ``root``, or an unknown
            channel.
    """
    tokens = subject.split(".")
    if len(tokens) < 4 or not all(tokens):
        raise MalformedMessage(subject, "expected <root>.<channel>.<exchange>.<symbol token>")
    got_root = ".".join(tokens[:-3])
    if root is not None and got_root != root:
        raise MalformedMessage(subject, f"subject root is {got_root!r}, expected {root!r}")
    channel, exchange, token = tokens[-3:]
    if channel not in _DECODERS:
        raise MalformedMessage(
            subject, f"unknown channel {channel!r} (expected one of {', '.join(CHANNELS)})"
        )
    return got_root, channel, exchange, token


def decode(subject: str, payload: bytes | bytearray | memoryview, *, root: str | None = None) -> Event:
    """The event a message carries, with exact decimals.

    Args:
        subject: the message's subject (see :func:`split_subject`).
        payload: the message's data (JSON).
        root: the expected subject root; ``None``: any.

    Raises:
        MalformedMessage: see :func:`split_subject`; the payload is not valid JSON for the channel's type
            (missing or mistyped fields, a price that is not a decimal string); the payload is for another
            exchange, symbol or channel than the subject says.
    """
    got_root, channel, _, _ = split_subject(subject, root)
    try:
        event = _DECODERS[channel].decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raw = bytes(payload[:PREVIEW_BYTES])
        more = "..." if len(payload) > PREVIEW_BYTES else ""
        raise MalformedMessage(
            subject, f"payload is not a {channel} event: {exc} (payload {raw!r}{more})"
        ) from None
    try:
        expected = subject_of(event, got_root)
    except ValueError as exc:  # an empty symbol
        raise MalformedMessage(subject, f"payload has no usable symbol: {exc}") from None
    if expected != subject:
        raise MalformedMessage(subject, f"payload belongs on {expected!r} ({event.exchange} {event.symbol})")
    return event
