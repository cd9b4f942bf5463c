"""Record a user's own capture: every raw frame and REST body the adapters are given, in a replayable file.

``cryptolink record CONFIG.yaml --out FILE [--duration S]`` runs the configured streams exactly as ``cryptolink
run`` does, but instead of writing normalized events it writes what the exchanges sent: every WebSocket frame
handed to an adapter (with its receipt time and connection number) and every REST body it parsed (book
snapshots, instrument lists, trade pages, connect tokens). The simulator replays such a file
(:func:`cryptolink.simulator.capture.load_capture`). The line format is documented in ``docs/recording.md``.

Nothing in the engine knows about recording: :class:`Recorder.wrap` is given to
:class:`~cryptolink.manager.ExchangeManager` as its ``adapter_wrapper`` and puts a :class:`RecordingAdapter`
around every adapter it builds. :class:`CaptureWriter` is a :class:`~cryptolink.sinks.base.Sink` (the service
runs it, flushes it on stop and ends the run with exit code 1 if it lost anything):

- lines are queued in memory (bounded by ``max_pending_bytes``) and written, gzip-compressed, by a worker thread
  every ``flush_interval_s`` seconds; a line that does not fit is dropped and counted (``lines_dropped``);
- a write failure is logged as an error, counted (the batch's lines are lost) and makes the sink unhealthy;
  nothing is dropped silently;
- the file is flushed (gzip sync flush) after every batch, so a crash leaves every flushed line readable.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import msgspec

from cryptolink import __version__
from cryptolink.bus import Bus, CallbackHandle
from cryptolink.clock import Clock, SystemClock
from cryptolink.config import CryptolinkConfig
from cryptolink.errors import CryptolinkError
from cryptolink.exchanges.base import (
    ConnectionSpec,
    Decoded,
    ExchangeAdapter,
    FrameDecoder,
    Instrument,
    OutboundRequest,
    RestRequest,
)
from cryptolink.models import Subscription, Trade
from cryptolink.report import Section
from cryptolink.sinks.base import SinkHealth

__all__ = [
    "CAPTURE_FORMAT",
    "CAPTURE_VERSION",
    "CaptureStats",
    "CaptureWriteError",
    "CaptureWriter",
    "ExchangeCounts",
    "Origin",
    "RecordResult",
    "Recorder",
    "RecordingAdapter",
    "record",
    "record_config",
]

log = logging.getLogger(__name__)

CAPTURE_FORMAT = "cryptolink-capture"
"""Value of the header line's ``format`` field."""
CAPTURE_VERSION = 1
"""Value of the header line's ``version`` field (this module writes version 1)."""

_encode = msgspec.json.Encoder().encode


class CaptureWriteError(CryptolinkError, OSError):
    """The capture file cannot be created or written (raised at start: the path is refused)."""


@dataclass(slots=True)
class ExchangeCounts:
    """What was recorded for one exchange (ccxt id): WebSocket frames (binary ones included), REST bodies and
    their payload bytes (frame text or body, before compression)."""

    frames: int = 0
    binary_frames: int = 0
    rest_bodies: int = 0
    payload_bytes: int = 0
    connections: int = 0


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Counters of one capture file, as an immutable snapshot.

    Attributes:
        path: the file.
        lines_written: lines on disk (the header included).
        lines_dropped: lines lost: the pending queue was full, a write failed, or the writer was closed.
        file_bytes: compressed bytes written to the file so far.
        exchanges: per exchange id, what was recorded (counted when queued, dropped lines included).
        error: the last write error (``None``: none).
    """

    path: Path
    lines_written: int
    lines_dropped: int
    file_bytes: int
    exchanges: dict[str, ExchangeCounts] = field(default_factory=dict)
    error: str | None = None

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.exchanges.values())

    @property
    def rest_bodies(self) -> int:
        return sum(c.rest_bodies for c in self.exchanges.values())

    def summary_lines(self) -> list[str]:
        """Human-readable summary: one line for the file, one per exchange."""
        lines = [
            f"{self.path}: {self.file_bytes:,} bytes, {self.lines_written:,} lines written, "
            f"{self.lines_dropped:,} dropped" + (f", ERROR: {self.error}" if self.error else "")
        ]
        for ex, c in sorted(self.exchanges.items()):
            lines.append(
                f"  {ex}: {c.frames:,} frames ({c.binary_frames:,} binary) on {c.connections} connections, "
                f"{c.rest_bodies:,} REST bodies, {c.payload_bytes:,} payload bytes"
            )
        return lines


@dataclass(frozen=True, slots=True)
class Origin:
    """Where recorded data comes from: exchange (ccxt id), market (``spot``, ``perpetual``) and feed (the
    configuration entry's name)."""

    exchange: str
    market: str
    feed: str

    def fields(self) -> dict[str, str]:
        """The record fields ``ex``, ``m``, ``feed``."""
        return {"ex": self.exchange, "m": self.market, "feed": self.feed}


class _CountingFile:
    """Counts the bytes the gzip stream writes to the underlying file."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.written = 0

    def write(self, data: bytes) -> int:
        n = self.raw.write(data)
        self.written += len(data)
        return n

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()


def _open_file(path: Path) -> IO[bytes]:
    return path.open("wb")


class CaptureWriter:
    """A gzip-compressed capture file of JSON lines, written by a worker thread; a
    :class:`~cryptolink.sinks.base.Sink`.

    The header line is written and flushed at construction, so an unwritable path fails at once.

    Args:
        path: the file to create (an existing file is replaced).
        clock: wall clock for the header's ``created`` and for records that have no receipt time.
        max_pending_bytes: bound on encoded lines waiting to be written; beyond it lines are dropped and counted.
        flush_interval_s: how often :meth:`run` writes the pending lines.
        compresslevel: gzip level (1 fastest .. 9 smallest).
        opener: opens ``path`` for binary writing (tests inject failing files).

    Raises:
        CaptureWriteError: the file cannot be created or the header cannot be written.
    """

    name = "capture"

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock | None = None,
        max_pending_bytes: int = 64 * 1024 * 1024,
        flush_interval_s: float = 0.5,
        compresslevel: int = 6,
        opener: Callable[[Path], IO[bytes]] = _open_file,
    ) -> None:
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self.max_pending_bytes = max_pending_bytes
        self.flush_interval_s = flush_interval_s
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._written = 0  # updated by the writing thread only
        self._write_lost = 0  # lines lost by failed writes (writing thread only)
        self._dropped = 0  # lines refused when queued (event-loop thread only)
        self._error: str | None = None
        self._closed = False
        self._counts: dict[str, ExchangeCounts] = {}
        self._lock = threading.Lock()
        self._inflight: asyncio.Future[None] | None = None
        if self.path.is_dir():
            raise CaptureWriteError(f"capture file {self.path} is not usable: is a directory")
        try:
            self._raw = _CountingFile(opener(self.path))
            self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=compresslevel, mtime=0)
            header = {
                "format": CAPTURE_FORMAT,
                "version": CAPTURE_VERSION,
                "created": self.clock.time_ns(),
                "writer": f"cryptolink {__version__}",
            }
            self._gz.write(_encode(header) + b"\n")
            self._gz.flush()
        except (OSError, ValueError) as exc:
            raw = getattr(self, "_raw", None)
            if raw is not None:
                with contextlib.suppress(OSError, ValueError):
                    raw.close()
            raise CaptureWriteError(f"capture file {self.path} is not usable: {exc}") from exc
        self._written = 1

    # ----------------------------------------------------------------------------------------------- records

    def _counts_of(self, exchange: str) -> ExchangeCounts:
        c = self._counts.get(exchange)
        if c is None:
            c = self._counts[exchange] = ExchangeCounts()
        return c

    def _add(self, record: dict[str, Any]) -> None:
        if self._closed or self._error is not None:
            self._dropped += 1
            return
        line = _encode(record) + b"\n"
        if self._pending_bytes + len(line) > self.max_pending_bytes:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 10_000 == 0:
                log.error("capture %s: writer behind, %d lines dropped so far", self.path, self._dropped)
            return
        self._pending.append(line)
        self._pending_bytes += len(line)

    def ws_frame(
        self,
        origin: Origin,
        *,
        connection: int,
        frame: str | bytes,
        receipt_ns: int,
    ) -> None:
        """Queue one received WebSocket frame (``bytes``: written base64 with ``"b": true``)."""
        c = self._counts_of(origin.exchange)
        c.frames += 1
        rec: dict[str, Any] = {"t": receipt_ns, "k": "ws", **origin.fields()}
        rec["c"] = connection
        if isinstance(frame, str):
            c.payload_bytes += len(frame)
            rec["f"] = frame
        else:
            c.binary_frames += 1
            c.payload_bytes += len(frame)
            rec["f"] = base64.b64encode(frame).decode("ascii")
            rec["b"] = True
        self._add(rec)

    def connection(self, origin: Origin, *, connection: int) -> None:
        """Queue the start of WebSocket session number ``connection``."""
        self._counts_of(origin.exchange).connections += 1
        rec: dict[str, Any] = {"t": self.clock.time_ns(), "k": "conn", **origin.fields()}
        rec["c"] = connection
        self._add(rec)

    def rest_body(
        self,
        origin: Origin,
        *,
        what: Literal["snapshot", "instruments", "trades", "connect"],
        body: bytes,
        receipt_ns: int | None = None,
        symbol: str | None = None,
        exchange_symbol: str | None = None,
        url: str | None = None,
    ) -> None:
        """Queue one REST body an adapter parsed (UTF-8 text as is, anything else base64 with ``"b": true``)."""
        c = self._counts_of(origin.exchange)
        c.rest_bodies += 1
        c.payload_bytes += len(body)
        t = receipt_ns if receipt_ns is not None else self.clock.time_ns()
        rec: dict[str, Any] = {"t": t, "k": "rest", **origin.fields(), "what": what}
        if symbol is not None:
            rec["symbol"] = symbol
        if exchange_symbol is not None:
            rec["xs"] = exchange_symbol
        if url is not None:
            rec["url"] = url
        try:
            rec["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            rec["body"] = base64.b64encode(body).decode("ascii")
            rec["b"] = True
        self._add(rec)

    # ------------------------------------------------------------------------------------------------ writing

    def _write(self, batch: list[bytes]) -> None:
        """Write ``batch`` (worker thread or caller); a failure marks the writer failed and counts the batch."""
        with self._lock:
            if not batch:
                return
            if self._error is not None:
                self._write_lost += len(batch)
                return
            try:
                self._gz.write(b"".join(batch))
                self._gz.flush()
            except (OSError, ValueError) as exc:
                self._error = f"{type(exc).__name__}: {exc}"
                self._write_lost += len(batch)
                log.error("capture %s: write failed, %d lines lost: %s", self.path, len(batch), self._error)
                return
            self._written += len(batch)

    def _take(self) -> list[bytes]:
        batch, self._pending = self._pending, []
        self._pending_bytes = 0
        return batch

    def flush(self) -> None:
        """Write every pending line now, in the calling thread."""
        self._write(self._take())

    async def flush_async(self) -> None:
        """Write every pending line in a worker thread (one write at a time, in order)."""
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._inflight)
        batch = self._take()
        if not batch:
            return
        fut = asyncio.ensure_future(asyncio.to_thread(self._write, batch))
        self._inflight = fut
        await asyncio.shield(fut)

    def close(self) -> None:
        """Write what is pending and close the file (idempotent). A failure is recorded (see :meth:`stats`)."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        with self._lock:
            try:
                self._gz.close()
                self._raw.close()
            except (OSError, ValueError) as exc:
                if self._error is None:
                    self._error = f"{type(exc).__name__}: {exc}"
                    log.error("capture %s: closing failed: %s", self.path, self._error)

    # ----------------------------------------------------------------------------------------- Sink protocol

    def attach(self, bus: Bus, *, feed: str | None = None, symbol: str | None = None) -> list[CallbackHandle]:
        """Nothing to subscribe: the capture is fed by :class:`RecordingAdapter`, not by the bus."""
        return []

    async def run(self) -> None:
        """Write pending lines every ``flush_interval_s`` seconds until cancelled."""
        while True:
            await self.clock.sleep(self.flush_interval_s)
            await self.flush_async()

    async def aclose(self) -> None:
        """Write every pending line and close the file (in a worker thread). Idempotent."""
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._inflight)
        await asyncio.to_thread(self.close)

    def health(self) -> SinkHealth:
        return SinkHealth(
            name=self.name,
            delivered=self._written,
            lost=self._dropped + self._write_lost,
            healthy=self._error is None,
            last_error=self._error,
        )

    def report_section(self) -> Section:
        return Section("capture", self.stats().summary_lines())

    def stats(self) -> CaptureStats:
        return CaptureStats(
            path=self.path,
            lines_written=self._written,
            lines_dropped=self._dropped + self._write_lost,
            file_bytes=self._raw.written,
            exchanges={k: _copy(v) for k, v in self._counts.items()},
            error=self._error,
        )


def _copy(c: ExchangeCounts) -> ExchangeCounts:
    return ExchangeCounts(**{f: getattr(c, f) for f in ExchangeCounts.__slots__})


# ------------------------------------------------------------------------------------------------ the proxy

_OWN = frozenset(
    {
        "decode",
        "session_decoder",
        "parse_snapshot",
        "parse_instruments",
        "parse_trades",
        "connect_url",
        "wrapped",
        "_writer",
        "_conn_ids",
        "_key",
    }
)


class RecordingAdapter(ExchangeAdapter):
    """Wraps an adapter: forwards everything to it and records what it is given.

    Every attribute read or write other than the recording methods goes to the wrapped adapter, so ``policy``,
    ``book_sync``, ``exchange``, ``market``, ``feed``, class attributes (``trade_ids_contiguous``,
    ``rest_limit``...) and every method read exactly as on the wrapped adapter.

    Recorded: each frame given to :meth:`decode` (connection ``0``) or to a decoder from
    :meth:`session_decoder` (each call opens a new connection number, from 1); each body given to
    :meth:`parse_snapshot` (with the subscription's symbol), :meth:`parse_instruments`, :meth:`parse_trades`
    and :meth:`connect_url`. Recording happens before parsing, so a frame the adapter rejects is recorded too.
    The exchange is named by ccxt's id (``ccxt_id`` where the adapter has one, else ``exchange``).
    """

    def __init__(
        self, adapter: ExchangeAdapter, writer: CaptureWriter, conn_ids: Iterator[int] | None = None
    ) -> None:
        # ExchangeAdapter.__init__ is not called: it would set ``feed`` on the wrapped adapter.
        object.__setattr__(self, "wrapped", adapter)
        object.__setattr__(self, "_writer", writer)
        object.__setattr__(self, "_conn_ids", conn_ids if conn_ids is not None else itertools.count(1))
        exchange = str(getattr(adapter, "ccxt_id", None) or adapter.exchange)
        object.__setattr__(self, "_key", Origin(exchange, str(adapter.market.value), adapter.feed))

    wrapped: ExchangeAdapter
    _writer: CaptureWriter
    _conn_ids: Iterator[int]
    _key: Origin

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN or (name.startswith("__") and name.endswith("__")):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "wrapped"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.wrapped, name, value)

    def __repr__(self) -> str:
        return f"RecordingAdapter({self.wrapped!r})"

    # forwarded (declared for the abstract base; reads go through __getattribute__ anyway)
    def exchange_symbol(self, symbol: str) -> str:
        return self.wrapped.exchange_symbol(symbol)

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionSpec]:
        return self.wrapped.plan_connections(subscriptions)

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        return self.wrapped.requests(op, subscriptions, next_id, now_ms)

    def instruments_request(self) -> RestRequest:
        return self.wrapped.instruments_request()

    # recorded
    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        self._writer.ws_frame(self._key, connection=0, frame=frame, receipt_ns=receipt_ns)
        return self.wrapped.decode(frame, receipt_ns)

    def session_decoder(self) -> FrameDecoder:
        inner = self.wrapped.session_decoder()
        conn = next(self._conn_ids)
        writer, key = self._writer, self._key
        writer.connection(key, connection=conn)

        def decode(frame: str | bytes, receipt_ns: int) -> list[Decoded]:
            writer.ws_frame(key, connection=conn, frame=frame, receipt_ns=receipt_ns)
            return inner(frame, receipt_ns)

        return decode

    def parse_snapshot(self, body: bytes, subscription: Subscription, receipt_ns: int) -> Any:
        w = self.wrapped
        self._writer.rest_body(
            self._key,
            what="snapshot",
            body=body,
            receipt_ns=receipt_ns,
            symbol=subscription.symbol,
            exchange_symbol=_exchange_symbol(w, subscription.symbol),
        )
        return w.parse_snapshot(body, subscription, receipt_ns)

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        self._writer.rest_body(self._key, what="instruments", body=body)
        return self.wrapped.parse_instruments(body)

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        w = self.wrapped
        self._writer.rest_body(
            self._key,
            what="trades",
            body=body,
            receipt_ns=receipt_ns,
            symbol=subscription.symbol,
            exchange_symbol=_exchange_symbol(w, subscription.symbol),
        )
        return w.parse_trades(body, subscription, receipt_ns)

    def connect_url(self, spec: ConnectionSpec, body: bytes) -> str:
        self._writer.rest_body(self._key, what="connect", body=body, url=spec.url)
        return self.wrapped.connect_url(spec, body)


def _exchange_symbol(adapter: ExchangeAdapter, symbol: str) -> str | None:
    """The exchange's id of ``symbol``; ``None`` when the adapter refuses it (recording never changes what the
    adapter does: it raises the same error when it parses)."""
    try:
        return adapter.exchange_symbol(symbol)
    except ValueError:
        return None


class Recorder:
    """Hands out :class:`RecordingAdapter`\\ s writing to one :class:`CaptureWriter`; connection numbers are
    unique across every adapter it wraps.

    >>> writer = CaptureWriter("capture.jsonl.gz")
    >>> manager = ExchangeManager(config, adapter_wrapper=Recorder(writer).wrap)
    """

    def __init__(self, writer: CaptureWriter) -> None:
        self.writer = writer
        self._conn_ids = itertools.count(1)

    def wrap(self, adapter: ExchangeAdapter) -> ExchangeAdapter:
        return RecordingAdapter(adapter, self.writer, self._conn_ids)


# ------------------------------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class RecordResult:
    """How a recording ended: the run's exit code and report (:class:`cryptolink.service.RunResult`) and the
    capture's final counters (``None`` when the file was refused, see ``error``)."""

    exit_code: int
    report: str
    capture: CaptureStats | None
    stopped_by: str | None = None
    error: str | None = None


async def record(
    config: CryptolinkConfig,
    out: Path | str,
    *,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    flush_interval_s: float = 0.5,
    manager_kwargs: dict[str, Any] | None = None,
) -> RecordResult:
    """Run ``config`` (as ``cryptolink run`` does, JSONL output off) recording into ``out`` until ``stop`` is
    set, a stop signal arrives or ``duration_s`` seconds (wall clock) have passed.

    Args:
        config: the validated configuration (its ``output`` section is ignored: the capture is the output).
        out: the capture file (replaced if it exists).
        duration_s: stop after this many seconds (``None`` or 0: only on ``stop`` or a signal).
        stop: set it to stop the recording.
        flush_interval_s: how often queued lines are written.
        manager_kwargs: extra :class:`~cryptolink.manager.ExchangeManager` arguments (``clock``, ``transport``).

    Returns:
        exit code 2 (nothing started) when ``out`` cannot be written or a symbol is not listed, 1 when capture
        lines were lost, else 0; the run's report (with a ``capture`` section) and the capture's counters.
    """
    from cryptolink.manager import ExchangeManager  # heavy imports at call time (CLI start-up)
    from cryptolink.service import EXIT_REFUSED, serve

    try:
        writer = CaptureWriter(out, flush_interval_s=flush_interval_s)
    except CaptureWriteError as exc:
        return RecordResult(EXIT_REFUSED, "", None, error=str(exc))
    cfg = config.model_copy(update={"output": config.output.model_copy(update={"enabled": False})})
    kwargs: dict[str, Any] = dict(manager_kwargs or {})
    if (
        "rest_budgets" not in kwargs
    ):  # rest.limits (Redis, overrides, share) apply to the recording's REST too
        from cryptolink.rest.budget import RateBudgets

        kwargs["rest_budgets"] = RateBudgets.from_config(
            cfg.rest.limits, kwargs.get("clock") or SystemClock()
        )
    manager = ExchangeManager(cfg, adapter_wrapper=Recorder(writer).wrap, **kwargs)
    stop = stop or asyncio.Event()
    timer = None
    if duration_s:
        timer = asyncio.get_running_loop().call_later(duration_s, stop.set)
    try:
        result = await serve(cfg, stop, manager=manager, sinks=[writer])
    finally:
        if timer is not None:
            timer.cancel()
        await writer.aclose()
    return RecordResult(result.exit_code, result.report, writer.stats(), result.stopped_by, result.error)


def record_config(config: CryptolinkConfig, out: Path, duration_s: float | None = None) -> int:
    """Entry point of ``cryptolink record`` (blocking): runs :func:`record`, prints the report and the capture
    summary; returns the exit code."""
    started = time.monotonic()
    result = asyncio.run(record(config, out, duration_s=duration_s))
    if result.error is not None:
        print(f"error: {result.error}", flush=True, file=sys.stderr)
    if result.report:
        print(result.report, flush=True)  # its "capture" section is the capture summary
    elif result.capture is not None:
        print("\n".join(result.capture.summary_lines()), flush=True)
    if result.capture is not None:
        print(f"recorded for {time.monotonic() - started:.1f} s into {out}", flush=True)
    return result.exit_code
