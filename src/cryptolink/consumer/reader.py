"""Reading the cryptolink stream through a durable JetStream pull consumer.

:class:`JetStreamReader` is an async context manager and an async iterator of ``(subject, event, position)``:

.. code-block:: python

    async with JetStreamReader("book-builder", servers=["nats://127.0.0.1:4222"]) as reader:
        async for subject, event, pos in reader:
            ...  # the message is acknowledged when the next one is asked for (or at a clean exit)

JetStream facts relied on (https://docs.nats.io/nats-concepts/jetstream/consumers):

- a *durable* consumer is kept by the server with its position; a reader that reopens it by name resumes after the
  last acknowledged message. ``deliver`` (``all``: from the stream's first message; ``new``: only messages stored
  after the consumer was created) applies when the consumer is created; an existing one keeps its position;
- with the explicit ack policy every message must be acknowledged; one not acknowledged within ``ack_wait`` is
  delivered again (at-least-once). A *nak* asks for redelivery at once; *term* stops redelivery of that message
  (https://docs.nats.io/learn/jetstream/acknowledgment);
- a pull consumer hands out messages in batches on request (``fetch``,
  https://docs.nats.io/learn/jetstream/reading-back); each delivered message carries its stream sequence, its
  delivery count and the number of messages still pending for the consumer (nats-py ``Msg.metadata``);
- the ``Nats-Msg-Id`` header is the publisher's message id, used by the stream to drop second copies within its
  duplicate window (https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive#message-deduplication).

Acknowledgement: a message is acknowledged when the caller asks for the next one, so a message is only ever
acknowledged after the caller got it. At a clean exit the last one is acknowledged too; when the ``async with``
block ends with an exception it is *nak*-ed (delivered again at once to the next reader), and so are messages
fetched but not handed out yet. Malformed messages (:class:`~cryptolink.consumer.decode.MalformedMessage`) are
counted, logged (rate-limited) and *term*-ed; the iteration goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from cryptolink.clock import Clock, SystemClock
from cryptolink.consumer.decode import Event, MalformedMessage, decode
from cryptolink.errors import NatsError
from cryptolink.redact import redact_url, scrub
from cryptolink.sinks.nats_credentials import NatsCredentials

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext


__all__ = [
    "DEFAULT_SERVERS",
    "JetStreamReader",
    "NatsCredentials",
    "NatsUnavailable",
    "ReaderError",
    "ReaderStats",
    "StreamPosition",
    "connect_nats",
]

log = logging.getLogger(__name__)

DEFAULT_SERVERS: tuple[str, ...] = ("nats://127.0.0.1:4222",)
"""Where a reader connects when given no servers."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ReaderError(NatsError):
    """The stream or the consumer cannot be used as asked (no such stream, a durable with another filter)."""


class NatsUnavailable(NatsError, ConnectionError):
    """No NATS server answered in time (the message names the servers, passwords hidden, and the last error)."""


async def connect_nats(
    servers: Sequence[str] = DEFAULT_SERVERS,
    credentials: NatsCredentials | None = None,
    *,
    connect_timeout_s: float = 5.0,
    start_timeout_s: float = 10.0,
    reconnect_wait_s: float = 1.0,
    name: str = "cryptolink-consumer",
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
) -> Client:
    """Connect to NATS, failing fast at start and reconnecting for ever once connected.

    Args:
        servers: NATS URLs (``nats://``, ``tls://``, ``ws://``, ``wss://``), tried in turn.
        credentials: authentication (default: none, or what the URLs carry).
        connect_timeout_s: time allowed for each connection attempt (seconds).
        start_timeout_s: give up when no server answered within this time (seconds).
        reconnect_wait_s: wait between attempts to the same server (seconds).
        name: the client name the server shows.
        on_error: also called with every error the client reports (after logging it at DEBUG), e.g. to count
            slow-consumer drops.

    Raises:
        NatsUnavailable: no server answered within ``start_timeout_s`` (authentication refused included).
        ValueError: no servers given.
    """
    if not servers:
        raise ValueError("no NATS servers given")
    creds = credentials or NatsCredentials()
    secrets = creds.secrets(servers)
    last: list[BaseException] = []

    async def error_cb(exc: Exception) -> None:
        last[:] = [exc]
        log.debug("NATS: %s", scrub(f"{type(exc).__name__}: {exc}", secrets))
        if on_error is not None:
            await on_error(exc)

    nc = Client()
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=list(servers),
                name=name,
                connect_timeout=max(1, math.ceil(connect_timeout_s)),
                reconnect_time_wait=max(1, math.ceil(reconnect_wait_s)),
                max_reconnect_attempts=-1,
                error_cb=error_cb,
                **creds.connect_kwargs(),
            ),
            start_timeout_s,
        )
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        cause = last[0] if last else exc
        where = ", ".join(redact_url(s) for s in servers)
        detail = scrub(f"{type(cause).__name__}: {cause}".rstrip(": "), secrets)
        raise NatsUnavailable(
            f"no NATS server answered at {where} within {start_timeout_s:g} s ({detail})"
        ) from None
    return nc


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a message sits in the stream.

    Attributes:
        stream_seq: the message's stream sequence (1-based, increasing).
        msg_id: its ``Nats-Msg-Id`` header (``None``: published without one).
        delivered: how many times the consumer delivered it (> 1: a redelivery).
    """

    stream_seq: int
    msg_id: str | None
    delivered: int = 1


@dataclass(frozen=True, slots=True)
class ReaderStats:
    """Counters of a :class:`JetStreamReader`.

    Attributes:
        messages: events handed to the caller.
        malformed: messages that did not decode (term-ed, not handed out).
        acked: messages acknowledged.
        nacked: messages nak-ed at close (fetched but not handed out, or the last one after an error).
        ack_errors: acknowledgements that could not be sent (the message will be delivered again).
        redelivered: events handed out that had been delivered before.
        fetches: batches fetched.
    """

    messages: int
    malformed: int
    acked: int
    nacked: int
    ack_errors: int
    redelivered: int
    fetches: int


class JetStreamReader:
    """Reads the cryptolink stream through a durable pull consumer (see the module docstring).

    Args:
        durable: the consumer's durable name (letters, digits, ``_``, ``-``; at most 64). Created when missing.
        servers / credentials: where to connect (ignored when ``nc`` is given).
        nc: an open connection to use (not closed by the reader); default: the reader connects and closes.
        stream: the stream's name (default ``CRYPTOLINK``).
        filter_subject: read only these subjects (wildcards allowed, e.g. ``cryptolink.book.>``); ``None``: all.
            An existing durable must have the same filter.
        deliver: where a new consumer starts: ``all`` (the stream's first message) or ``new``.
        subject_root: the expected subject root (``None``: any) — see :func:`~cryptolink.consumer.decode.decode`.
        batch: messages per fetch (1..10 000).
        fetch_timeout_s: one fetch waits at most this long for messages (seconds, > 0).
        ack_wait_s: a new consumer redelivers a message not acknowledged within this time (seconds, > 0).
        until_caught_up: end the iteration once nothing is pending (every stored message delivered); default:
            wait for new messages for ever.
        on_malformed: called with ``(subject, reason)`` for each malformed message (e.g.
            :meth:`BookRebuilder.note_malformed <cryptolink.consumer.books.BookRebuilder.note_malformed>`).
        connect_timeout_s / start_timeout_s: see :func:`connect_nats`.
        clock / log_interval_s: rate limit of the malformed-message warnings (one per interval, seconds).

    Raises:
        ValueError: an argument out of range or a bad durable name.
        NatsUnavailable: (on enter) no server answered.
        ReaderError: (on enter) no such stream, or the durable exists with another filter or is a push consumer.
    """

    def __init__(
        self,
        durable: str,
        *,
        servers: Sequence[str] = DEFAULT_SERVERS,
        credentials: NatsCredentials | None = None,
        nc: Client | None = None,
        stream: str = "CRYPTOLINK",
        filter_subject: str | None = None,
        deliver: Literal["all", "new"] = "all",
        subject_root: str | None = None,
        batch: int = 256,
        fetch_timeout_s: float = 5.0,
        ack_wait_s: float = 30.0,
        until_caught_up: bool = False,
        on_malformed: Callable[[str, str], None] | None = None,
        connect_timeout_s: float = 5.0,
        start_timeout_s: float = 10.0,
        clock: Clock | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        if not _NAME.match(durable):
            raise ValueError(f"durable name {durable!r}: use 1-64 letters, digits, '_' or '-'")
        if not _NAME.match(stream):
            raise ValueError(f"stream name {stream!r}: use 1-64 letters, digits, '_' or '-'")
        if deliver not in ("all", "new"):
            raise ValueError(f"deliver must be 'all' or 'new', got {deliver!r}")
        if not 1 <= batch <= 10_000:
            raise ValueError(f"batch must be 1..10000, got {batch}")
        if not fetch_timeout_s > 0 or not ack_wait_s > 0:
            raise ValueError("fetch_timeout_s and ack_wait_s must be > 0")
        if filter_subject is not None and (not filter_subject or " " in filter_subject):
            raise ValueError(f"bad filter subject {filter_subject!r}")
        self.durable = durable
        self.stream = stream
        self.filter_subject = filter_subject
        self.deliver = deliver
        self.subject_root = subject_root
        self.batch = batch
        self.fetch_timeout_s = fetch_timeout_s
        self.ack_wait_s = ack_wait_s
        self.until_caught_up = until_caught_up
        self._servers = tuple(servers)
        self._credentials = credentials
        self._nc = nc
        self._own_nc = nc is None
        self._connect_timeout_s = connect_timeout_s
        self._start_timeout_s = start_timeout_s
        self._on_malformed = on_malformed
        self._clock: Clock = clock or SystemClock()
        self._log_interval_s = log_interval_s
        self._last_malformed_log: float | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._batch: deque[Msg] = deque()
        self._unacked: Msg | None = None
        self._last_pending: int | None = None
        self._closed = False
        self._messages = 0
        self._malformed = 0
        self._acked = 0
        self._nacked = 0
        self._ack_errors = 0
        self._redelivered = 0
        self._fetches = 0

    # ------------------------------------------------------------------------------------------ life
    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close(ack_last=exc_type is None)

    async def open(self) -> None:
        """Connect (unless given a connection), check the stream, create or check the durable consumer and
        bind to it. Raises as the class says."""
        if self._sub is not None or self._closed:
            raise RuntimeError("JetStreamReader is already open or closed; make a new one")
        if self._nc is None:
            self._nc = await connect_nats(
                self._servers,
                self._credentials,
                connect_timeout_s=self._connect_timeout_s,
                start_timeout_s=self._start_timeout_s,
                name=f"cryptolink-reader-{self.durable}",
            )
        try:
            js = self._js = self._nc.jetstream()
            try:
                await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                raise ReaderError(f"no JetStream stream named {self.stream!r}") from None
            await self._ensure_consumer(js)
            self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        except BaseException:
            await self._release()
            raise

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            config = api.ConsumerConfig(
                durable_name=self.durable,
                deliver_policy=api.DeliverPolicy.ALL if self.deliver == "all" else api.DeliverPolicy.NEW,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                filter_subject=self.filter_subject,
            )
            await js.add_consumer(self.stream, config=config)
            log.info(
                "created durable consumer %s on stream %s (deliver %s, filter %s)",
                self.durable,
                self.stream,
                self.deliver,
                self.filter_subject or "-",
            )
            return
        if info.config.deliver_subject:
            raise ReaderError(
                f"consumer {self.durable!r} on {self.stream!r} is a push consumer; use another name"
            )
        have = info.config.filter_subject or None
        if have != self.filter_subject:
            raise ReaderError(
                f"durable consumer {self.durable!r} on {self.stream!r} filters {have or 'nothing'}, not "
                f"{self.filter_subject or 'nothing'}; use another durable name or delete that consumer"
            )

    async def close(self, *, ack_last: bool = True) -> None:
        """Acknowledge the last message handed out (or nak it when ``ack_last`` is false), nak the fetched
        messages not handed out, unbind and close the connection if the reader opened it. Idempotent; the
        durable consumer stays on the server."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._unacked is not None:
                msg, self._unacked = self._unacked, None
                if ack_last:
                    await self._ack(msg)
                else:
                    await self._nak(msg)
            while self._batch:
                await self._nak(self._batch.popleft())
            if self._nc is not None and self._nc.is_connected:
                try:
                    await self._nc.flush(timeout=5)
                except (
                    nats.errors.Error,
                    TimeoutError,
                ) as exc:  # the server may miss the last acks: redelivery
                    log.warning("could not flush the acknowledgements at close: %s", type(exc).__name__)
        finally:
            await self._release()

    async def _release(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        nc = self._nc
        if nc is not None and self._own_nc:
            self._nc = None
            with contextlib.suppress(Exception):
                await nc.close()

    # ------------------------------------------------------------------------------------- iteration
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[str, Event, StreamPosition]:
        if self._unacked is not None:
            msg, self._unacked = self._unacked, None
            await self._ack(msg)
        if self._closed:
            raise StopAsyncIteration
        if self._sub is None:
            raise RuntimeError("JetStreamReader is not open: use `async with JetStreamReader(...) as reader`")
        while True:
            if not self._batch:
                if self.until_caught_up and self._last_pending == 0:
                    raise StopAsyncIteration
                if not await self._fill():
                    raise StopAsyncIteration
                continue
            msg = self._batch.popleft()
            meta = msg.metadata
            self._last_pending = meta.num_pending
            try:
                event = decode(msg.subject, msg.data, root=self.subject_root)
            except MalformedMessage as exc:
                self._malformed_message(msg, exc)
                await self._term(msg)
                continue
            self._unacked = msg
            self._messages += 1
            if meta.num_delivered > 1:
                self._redelivered += 1
            headers = msg.headers
            msg_id = headers.get("Nats-Msg-Id") if headers else None
            return msg.subject, event, StreamPosition(meta.sequence.stream, msg_id, meta.num_delivered)

    async def _fill(self) -> bool:
        """Fetch the next batch; ``False`` when caught up and told to stop there."""
        assert self._sub is not None and self._js is not None
        while True:
            try:
                msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout_s)
            except nats.errors.TimeoutError:
                if self.until_caught_up:
                    info = await self._js.consumer_info(self.stream, self.durable)
                    if info.num_pending == 0 and not info.num_ack_pending:
                        return False
                continue
            self._fetches += 1
            self._batch.extend(msgs)
            if msgs:
                return True

    def _malformed_message(self, msg: Msg, exc: MalformedMessage) -> None:
        self._malformed += 1
        if self._on_malformed is not None:
            self._on_malformed(exc.subject, exc.reason)
        now = self._clock.monotonic()
        if self._last_malformed_log is None or now - self._last_malformed_log >= self._log_interval_s:
            self._last_malformed_log = now
            log.warning(
                "stream %s seq %d: malformed message skipped: %s (%d malformed in all)",
                self.stream,
                msg.metadata.sequence.stream,
                exc,
                self._malformed,
            )

    async def _ack(self, msg: Msg) -> None:
        try:
            await msg.ack()
            self._acked += 1
        except nats.errors.Error as exc:  # connection closed / already acked: it will come again
            self._ack_errors += 1
            log.warning("could not acknowledge stream seq %s: %s", _seq(msg), type(exc).__name__)

    async def _nak(self, msg: Msg) -> None:
        try:
            await msg.nak()
            self._nacked += 1
        except nats.errors.Error as exc:
            self._ack_errors += 1
            log.warning("could not nak stream seq %s: %s", _seq(msg), type(exc).__name__)

    async def _term(self, msg: Msg) -> None:
        try:
            await msg.term()
        except nats.errors.Error as exc:
            self._ack_errors += 1
            log.warning("could not term stream seq %s: %s", _seq(msg), type(exc).__name__)

    def stats(self) -> ReaderStats:
        """The counters now."""
        return ReaderStats(
            messages=self._messages,
            malformed=self._malformed,
            acked=self._acked,
            nacked=self._nacked,
            ack_errors=self._ack_errors,
            redelivered=self._redelivered,
            fetches=self._fetches,
        )


def _seq(msg: Msg) -> int | str:
    try:
        return msg.metadata.sequence.stream
    except Exception:
        return "?"
