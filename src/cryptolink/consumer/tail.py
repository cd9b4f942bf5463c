"""``cryptolink tail``: print the cryptolink events on a NATS subject, one line per message.

By default the messages published from now on are read with a core NATS subscription on the subject (wildcards
allowed: ``cryptolink.trades.binance.*``, ``cryptolink.>``); nothing is stored or acknowledged. With
``from_start`` (or ``last``) an *ordered consumer* — an ephemeral, unacknowledged JetStream consumer that the
client recreates at the right sequence if a message is missed, and the server removes when the client leaves
(https://docs.nats.io/learn/jetstream/ordered-consumer) — reads the stream holding the subject from its first
message (or from the last ``last`` messages matching it), then goes on live.

Lines (:func:`format_line`): ``<time> <subject> <fields>``, the time being the exchange's (else the publisher's
receipt time), UTC, ms:

- trade: ``buy 0.5 @ 60000.1 id=3081234567``;
- ticker: ``bid 1.2 @ 60000.0 | ask 0.3 @ 60000.1 last 60000.0 seq=...``;
- book: ``snapshot seq=... bids=20 asks=20 best 60000.0/60000.1`` or ``delta seq=... prev=... bids=3 asks=1``;
- gap: ``GAP book resync 12:00:01.000 -> 12:00:03.500 (2.500 s) ids 100-105 recovered``;
- a message that does not decode: ``MALFORMED: <reason>``.

``as_json`` prints each payload as it came (one JSON object per line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from cryptolink.consumer.decode import Event, MalformedMessage, decode
from cryptolink.consumer.reader import DEFAULT_SERVERS, NatsCredentials, connect_nats
from cryptolink.errors import CryptolinkError
from cryptolink.models import BookUpdate, Gap, Ticker, Trade

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription
    from nats.js.client import JetStreamContext

__all__ = ["TailError", "TailStats", "check_subject", "format_line", "tail"]

log = logging.getLogger(__name__)


class TailError(CryptolinkError, ValueError):
    """A bad subject or count, or no stream holding the subject (for ``from_start``/``last``)."""


class _Writer(Protocol):
    def write(self, s: str, /) -> object: ...

    def flush(self) -> object: ...


@dataclass(frozen=True, slots=True)
class TailStats:
    """What :func:`tail` printed.

    Attributes:
        printed: lines printed (one per message).
        malformed: messages that did not decode (printed as ``MALFORMED`` lines; with ``as_json`` nothing is
            decoded, so 0).
        dropped: messages the client dropped because printing fell behind (slow consumer, live mode).
    """

    printed: int
    malformed: int
    dropped: int


def check_subject(subject: str) -> str:
    """``subject`` if it is a valid NATS subscription subject: non-empty tokens without white space, ``*``
    alone in a token, ``>`` alone and last (https://docs.nats.io/nats-concepts/subjects).

    Raises:
        TailError: otherwise (the message says why).
    """
    tokens = subject.split(".")
    if not subject or any(not t for t in tokens):
        raise TailError(f"bad subject {subject!r}: empty token")
    if any(ch.isspace() for ch in subject):
        raise TailError(f"bad subject {subject!r}: white space")
    for i, tok in enumerate(tokens):
        if ("*" in tok and tok != "*") or (">" in tok and tok != ">"):
            raise TailError(f"bad subject {subject!r}: a wildcard must be a whole token")
        if tok == ">" and i != len(tokens) - 1:
            raise TailError(f"bad subject {subject!r}: '>' must be the last token")
    return subject


# ---------------------------------------------------------------------------------------------- lines


def _time(ms: int | None, receipt_ns: int) -> str:
    ns = ms * 1_000_000 if ms is not None else receipt_ns
    dt = datetime.fromtimestamp(ns // 1_000_000 / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns // 1_000_000 % 1000:03d}Z"


def _clock(ms: int | None) -> str:
    if ms is None:
        return "?"
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%H:%M:%S.") + f"{ms % 1000:03d}"


def _px(level: tuple[Decimal, Decimal] | None) -> str:
    return "-" if level is None else str(level[0])


def format_line(subject: str, event: Event) -> str:
    """The compact human line of one event (see the module docstring); no trailing newline."""
    if isinstance(event, Trade):
        head = _time(event.timestamp_ms, event.receipt_ns)
        extra = " backfilled" if event.backfilled else ""
        return f"{head} {subject} {event.side} {event.amount} @ {event.price} id={event.trade_id}{extra}"
    if isinstance(event, Ticker):
        head = _time(event.timestamp_ms, event.receipt_ns)
        line = (
            f"{head} {subject} bid {event.bid_size if event.bid_size is not None else '-'} @ "
            f"{event.bid_price if event.bid_price is not None else '-'} | ask "
            f"{event.ask_size if event.ask_size is not None else '-'} @ "
            f"{event.ask_price if event.ask_price is not None else '-'}"
        )
        if event.last_price is not None:
            line += f" last {event.last_price}"
        if event.sequence is not None:
            line += f" seq={event.sequence}"
        return line
    if isinstance(event, BookUpdate):
        head = _time(event.timestamp_ms, event.receipt_ns)
        if event.is_snapshot:
            best_bid = event.bids[0] if event.bids else None
            best_ask = event.asks[0] if event.asks else None
            return (
                f"{head} {subject} snapshot seq={event.sequence} bids={len(event.bids)} asks={len(event.asks)} "
                f"best {_px(best_bid)}/{_px(best_ask)}"
            )
        prev = "-" if event.prev_sequence is None else str(event.prev_sequence)
        return f"{head} {subject} delta seq={event.sequence} prev={prev} bids={len(event.bids)} asks={len(event.asks)}"
    gap: Gap = event
    head = _time(gap.to_ms if gap.to_ms is not None else gap.from_ms, gap.receipt_ns)
    span = f"{_clock(gap.from_ms)} -> {_clock(gap.to_ms)}"
    if gap.from_ms is not None and gap.to_ms is not None:
        span += f" ({(gap.to_ms - gap.from_ms) / 1000:.3f} s)"
    line = f"{head} {subject} GAP {gap.stream} {gap.cause} {span}"
    if gap.first_missing_id is not None:
        line += (
            f" ids {gap.first_missing_id}-{gap.last_missing_id if gap.last_missing_id is not None else '?'}"
        )
    if gap.recovered:
        line += f" recovered ({gap.backfilled} backfilled)"
    elif gap.backfilled:
        line += f" {gap.backfilled} backfilled"
    if gap.detail:
        line += f" - {gap.detail}"
    return line


# ---------------------------------------------------------------------------------------------- tail


async def tail(
    servers: Sequence[str],
    subject: str,
    *,
    out: _Writer,
    credentials: NatsCredentials | None = None,
    from_start: bool = False,
    last: int | None = None,
    count: int | None = None,
    as_json: bool = False,
    stream: str | None = None,
    connect_timeout_s: float = 5.0,
    start_timeout_s: float = 5.0,
    ready: asyncio.Event | None = None,
) -> TailStats:
    """Print the messages on ``subject`` to ``out``, one line each, until ``count`` lines (or cancelled).

    Args:
        servers: NATS URLs (default :data:`~cryptolink.consumer.reader.DEFAULT_SERVERS` when empty).
        subject: a NATS subject, wildcards allowed.
        out: where lines go (``write``/``flush``; flushed after every line).
        credentials: authentication (URLs may carry ``user:password@`` too).
        from_start: read the stream holding ``subject`` from its first message, then live.
        last: read the last ``last`` stored messages matching ``subject``, then live (>= 1; implies the stream).
        count: stop after this many lines (>= 1); ``None``: until cancelled.
        as_json: print each raw payload instead of the compact line.
        stream: the stream to read with ``from_start``/``last`` (default: the stream whose subjects hold
            ``subject``).
        connect_timeout_s / start_timeout_s: see :func:`~cryptolink.consumer.reader.connect_nats`.
        ready: set once the subscription is in place (tests publish after it).

    Returns:
        :class:`TailStats`.

    Raises:
        TailError: a bad subject, ``count`` or ``last``; no stream holds ``subject``.
        NatsUnavailable: no server answered.
    """
    check_subject(subject)
    if count is not None and count < 1:
        raise TailError(f"count must be >= 1, got {count}")
    if last is not None and last < 1:
        raise TailError(f"last must be >= 1, got {last}")
    dropped = [0]

    async def on_error(exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            dropped[0] += 1

    nc = await connect_nats(
        servers or DEFAULT_SERVERS,
        credentials,
        connect_timeout_s=connect_timeout_s,
        start_timeout_s=start_timeout_s,
        name="cryptolink-tail",
        on_error=on_error,
    )
    printed = malformed = 0
    sub: Subscription | None = None
    try:
        if from_start or last is not None:
            sub = await _ordered(nc.jetstream(), subject, stream, last)
        else:
            sub = await nc.subscribe(subject)
        await nc.flush()
        if ready is not None:
            ready.set()
        while count is None or printed < count:
            msg: Msg = await sub.next_msg(timeout=None)
            if as_json:
                line = bytes(msg.data).decode("utf-8", "replace").rstrip("\n")
            else:
                try:
                    line = format_line(msg.subject, decode(msg.subject, msg.data))
                except MalformedMessage as exc:
                    malformed += 1
                    line = f"{msg.subject} MALFORMED: {exc.reason}"
            out.write(line + "\n")
            out.flush()
            printed += 1
    finally:
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await nc.close()
    return TailStats(printed, malformed, dropped[0])


async def _ordered(js: JetStreamContext, subject: str, stream: str | None, last: int | None) -> Subscription:
    """An ordered consumer on the stream holding ``subject``, from its start or its last ``last`` matches."""
    if stream is None:
        try:
            stream = await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            raise TailError(f"no JetStream stream holds {subject!r}") from None
    config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
    if last is not None:
        start = await _start_for_last(js, stream, subject, last)
        if start is not None:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            )
    try:
        return await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    except nats.js.errors.NotFoundError:
        raise TailError(f"no JetStream stream named {stream!r}") from None


async def _start_for_last(js: JetStreamContext, stream: str, subject: str, n: int) -> int | None:
    """The stream sequence from which exactly the last ``n`` messages matching ``subject`` follow, or
    ``None`` when the stream holds ``n`` or fewer of them (read it all). Binary search over the start sequence
    with throw-away consumers' pending counts: at most ~log2(stream length) probes."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        raise TailError(f"no JetStream stream named {stream!r}") from None
    first, last_seq = info.state.first_seq, info.state.last_seq
    if info.state.messages == 0 or await _pending(js, stream, subject, first) <= n:
        return None
    lo, hi = first, last_seq + 1  # pending(lo) > n ... invariant: pending(lo) >= n > pending(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if await _pending(js, stream, subject, mid) >= n:
            lo = mid
        else:
            hi = mid
    return lo


async def _pending(js: JetStreamContext, stream: str, subject: str, start: int) -> int:
    """Messages matching ``subject`` at or after stream sequence ``start``."""
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=api.AckPolicy.NONE,
        filter_subject=subject,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    info = await js.add_consumer(stream, config=config)
    try:
        return int(info.num_pending or 0)
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, info.name)
