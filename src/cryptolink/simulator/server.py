"""Server plumbing shared by the simulated exchanges: one aiohttp app per exchange, connections,
observability.

:class:`ExchangeServer` serves REST routes and the WebSocket upgrade on one 127.0.0.1 port. Each accepted socket
is a :class:`SimConnection` with a bounded send queue drained by one writer task, one timer task (server pings,
pong timeout, lifetime, idle close) and the receive loop (inbound rate limit, client pings, text frames handed to
the exchange protocol). Fault state lives on the connection. Everything the server sends on a data stream is
recorded in bounded per-connection :class:`StreamStats` so tests can prove "nothing lost, nothing twice". An
``outage`` fault (:meth:`ExchangeServer.begin_outage`) closes the listening socket and every connection, then
listens again on the same port; the market sources keep running.

Observability for black-box clients: ``GET /_sim/stats`` on each exchange's REST port answers JSON (see
:meth:`ExchangeServer.sim_stats`): connections open and total, frames sent per stream, REST requests and weight
used, 429/418 answered, faults injected. Protocol modules feed it through :meth:`ExchangeServer.count_rest` and
:meth:`ExchangeServer.count_limited`. Unknown REST paths are answered by :meth:`ExchangeServer.unknown_path`
(each exchange's own JSON error shape, never ``text/plain``). Periodic streams (Binance ``@depth@100ms``,
``@ticker``...) run on :meth:`ExchangeServer.on_tick`: callbacks at multiples of the interval on the clock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from cryptolink.clock import Clock
from cryptolink.simulator import registry
from cryptolink.simulator.config import ExchangeRules, SimConfig
from cryptolink.simulator.faults import Fault
from cryptolink.simulator.market import REPLAY_FILES, MarketSource, make_source, preload_replay

__all__ = ["ConnectionStats", "ExchangeServer", "SimConnection", "StreamStats"]

log = logging.getLogger(__name__)

CORRUPT_FRAME = '{"corrupt": tru'


@dataclass(slots=True)
class StreamStats:
    """What one connection was sent on one stream (Binance stream name, OKX ``channel:instId``).

    ``first_id``/``last_id``: first and last sequence (book ``u``/seqId) or trade id sent;
    ``non_increasing``: frames
    whose id did not exceed the previous one (must stay 0 unless a seq reset was injected); ``skipped``:
    frames
    withheld by a ``gap`` fault; ``last_ts_ms``: wall time of the last send.
    """

    frames: int = 0
    first_id: int | None = None
    last_id: int | None = None
    non_increasing: int = 0
    skipped: int = 0
    last_ts_ms: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """Immutable snapshot of one connection."""

    conn_id: int
    exchange: str
    path: str
    open: bool
    opened_at_s: float
    closed_at_s: float | None
    close_code: int | None
    close_reason: str
    frames_sent: int
    frames_received: int
    stalled: int
    pings_sent: int
    pongs_received: int
    subscriptions: tuple[str, ...]
    streams: dict[str, StreamStats]


class SimConnection:
    """One accepted WebSocket. Attributes are read by tests; fault fields are set by :meth:`apply_fault`."""

    def __init__(
        self, conn_id: int, server: ExchangeServer, ws: web.WebSocketResponse, request: web.Request
    ) -> None:
        self.conn_id = conn_id
        self.tag = f"{conn_id:08x}"  # OKX connId
        self.server = server
        self.ws = ws
        self.path = request.path_qs
        self.route = request.path
        self._transport = request.transport
        clock = server.clock
        self.opened_at = clock.monotonic()
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscriptions: dict[str, Any] = {}
        self.streams: dict[str, StreamStats] = {}
        self.recent: collections.deque[tuple[int, str, int | None]] = collections.deque(maxlen=1000)
        self.frames_sent = 0
        self.frames_received = 0
        self.stalled = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.last_activity = self.opened_at
        self.in_times: collections.deque[float] = collections.deque()
        self.ping_outstanding_since: float | None = None
        self.combined = False
        self.sub_times: collections.deque[float] = collections.deque()
        # fault state
        self.stall_until = -math.inf
        self.noping_until = -math.inf
        self.delay_s = 0.0
        self.delay_until = -math.inf
        self.corrupt_next = False
        self.gap_symbols: set[str | None] = set()
        self.badchecksum_symbols: set[str | None] = set()
        self.reject_next = False
        self.wake = asyncio.Event()
        self._queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue(server.rules.send_queue)
        self._tasks: list[asyncio.Task[None]] = []

    # ---- sending ----
    @property
    def is_open(self) -> bool:
        return not self.closed.done()

    def send_ctrl(self, text: str) -> None:
        """Queue a control frame (ack, error, pong text, notice): not subject to stall/corrupt/gap."""
        self._put(text)

    def send_data(self, text: str, stream: str, ident: int | None, ts_ms: int) -> None:
        """Queue a data frame of ``stream`` carrying sequence/trade id ``ident`` and record it."""
        now = self.server.clock.monotonic()
        if now < self.stall_until:
            self.stalled += 1
            return
        if self.corrupt_next:
            self.corrupt_next = False
            text = CORRUPT_FRAME
        st = self.streams.get(stream)
        if st is None:
            if len(self.streams) >= 4 * self.server.rules.max_streams:
                return
            st = self.streams[stream] = StreamStats()
        st.frames += 1
        if ident is not None:
            if st.first_id is None:
                st.first_id = ident
            elif st.last_id is not None and ident <= st.last_id:
                st.non_increasing += 1
            st.last_id = ident
        st.last_ts_ms = ts_ms
        self.server.count_frame(stream)
        self.recent.append((ts_ms, stream, ident))
        self.last_activity = now
        self._put(text)

    def take_gap(self, symbol: str) -> bool:
        """True (once) when a ``gap`` fault asks to withhold this symbol's next book delta."""
        if not self.gap_symbols:
            return False
        for key in (symbol, None):
            if key in self.gap_symbols:
                self.gap_symbols.discard(key)
                return True
        return False

    def note_skipped(self, stream: str) -> None:
        st = self.streams.setdefault(stream, StreamStats())
        st.skipped += 1

    def _put(self, text: str) -> None:
        if not self.is_open:
            return
        try:
            self._queue.put_nowait((self.server.clock.monotonic(), text))
        except asyncio.QueueFull:
            log.warning("%s conn %d: send queue full, dropping slow consumer", self.server.name, self.conn_id)
            self.abort("send queue overflow")

    async def _writer(self) -> None:
        clock = self.server.clock
        while True:
            queued_at, text = await self._queue.get()
            if self.delay_s > 0 and clock.monotonic() < self.delay_until:
                wait = queued_at + self.delay_s - clock.monotonic()
                if wait > 0:
                    await clock.sleep(wait)
            if self.server.binary_frames:
                await self.ws.send_bytes(self.server.encode_frame(text))
            else:
                await self.ws.send_str(text)
            self.frames_sent += 1

    # ---- closing ----
    def _mark_closed(self, code: int | None, reason: str) -> None:
        if self.closed.done():
            return
        self.close_code = code
        self.close_reason = reason
        self.closed_at = self.server.clock.monotonic()
        self.closed.set_result(None)
        queue = self._queue  # frames that will never be sent: free them (up to send_queue per connection,
        while not queue.empty():  # and the last 1000 closed connections are kept for stats)
            queue.get_nowait()
        self.server._on_closed(self)

    def abort(self, reason: str = "drop") -> None:
        """Cut the TCP connection without a close frame."""
        self._mark_closed(None, reason)
        if self._transport is not None:
            self._transport.abort()

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and end the connection."""
        self._mark_closed(code, reason)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), 2.0)
        if self._transport is not None:
            self._transport.abort()

    def close_soon(self, code: int, reason: str) -> None:
        """Schedule :meth:`close` from synchronous code."""
        if self.is_open:
            self._mark_closed(code, reason)
            self.server._spawn(self._close_frame(code, reason))

    async def _close_frame(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), 2.0)
        if self._transport is not None:
            self._transport.abort()

    # ---- timers ----
    async def _timers(self) -> None:
        rules, clock = self.server.rules, self.server.clock
        next_ping = self.opened_at + rules.ping_interval_s if rules.ping_interval_s else math.inf
        while self.is_open:
            now = clock.monotonic()
            if rules.lifetime_s is not None and now - self.opened_at >= rules.lifetime_s:
                await self.server.lifetime_close(self)
                return
            if (
                rules.pong_timeout_s is not None
                and self.ping_outstanding_since is not None
                and now - self.ping_outstanding_since >= rules.pong_timeout_s
            ):
                await self.close(1008, "pong timeout")  # code: our choice, the docs only say "disconnect"
                return
            if rules.idle_close_s is not None and now - self.last_activity >= rules.idle_close_s:
                await self.server.idle_close(self)
                return
            if now >= next_ping:
                next_ping = now + (rules.ping_interval_s or math.inf)
                if now >= self.noping_until:
                    with contextlib.suppress(Exception):
                        await self.server.send_ping(self, clock.time_ns() // 1_000_000)
                    self.pings_sent += 1
                    if self.ping_outstanding_since is None:
                        self.ping_outstanding_since = now
            deadlines = [next_ping]
            if rules.lifetime_s is not None:
                deadlines.append(self.opened_at + rules.lifetime_s)
            if rules.pong_timeout_s is not None and self.ping_outstanding_since is not None:
                deadlines.append(self.ping_outstanding_since + rules.pong_timeout_s)
            if rules.idle_close_s is not None:
                deadlines.append(self.last_activity + rules.idle_close_s)
            wait = max(0.0, min(deadlines) - clock.monotonic())
            sleeper = asyncio.ensure_future(clock.sleep(wait if math.isfinite(wait) else 3600.0))
            waker = asyncio.ensure_future(self.wake.wait())
            try:
                waiters: set[asyncio.Future[Any]] = {sleeper, waker, self.closed}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
            self.wake.clear()

    # ---- receive ----
    def _count_inbound(self) -> bool:
        """Record one inbound frame; False when the per-second limit is exceeded."""
        self.frames_received += 1
        limit = self.server.rules.max_in_msgs_per_s
        if limit is None:
            return True
        now = self.server.clock.monotonic()
        times = self.in_times
        times.append(now)
        while times and now - times[0] >= 1.0:
            times.popleft()
        return len(times) <= limit

    async def serve(self) -> None:
        """Run until the socket ends: the receive loop plus writer and timer tasks."""
        self._tasks = [
            asyncio.create_task(self._writer()),
            asyncio.create_task(self._timers()),
        ]
        try:
            async for msg in self.ws:
                if not self.is_open:
                    break
                if not self._count_inbound():
                    await self.close(1008, "Too many requests")
                    break
                if msg.type == WSMsgType.TEXT:
                    await self.server.on_text(self, msg.data)
                elif msg.type == WSMsgType.PING:
                    if self.server.clock.monotonic() >= self.noping_until:
                        await self.ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    self.pongs_received += 1
                    self.server.notify()
                    if self.server.clock.monotonic() >= self.noping_until:
                        self.ping_outstanding_since = None
                        self.wake.set()
                elif msg.type == WSMsgType.BINARY:
                    await self.server.on_text(self, msg.data.decode("utf-8", "replace"))
        except Exception as exc:  # a broken socket ends this connection only
            log.debug("conn %d receive loop ended: %r", self.conn_id, exc)
        finally:
            if self.is_open:
                code = self.ws.close_code
                self._mark_closed(code, "client closed" if code is not None else "connection lost")
            # let queued frames (e.g. a close-causing error) flush briefly, then stop the tasks
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def apply_fault(self, fault: Fault) -> None:
        """Apply a connection-level fault now (exchange-specific kinds go through the server)."""
        now = self.server.clock.monotonic()
        kind = fault.kind
        if kind == "drop":
            self.abort("fault: drop")
        elif kind == "close":
            self.close_soon(fault.code, "fault: close")
        elif kind == "stall":
            self.stall_until = now + (fault.duration_s or 0.0)
        elif kind == "noping":
            self.noping_until = now + fault.duration_s if fault.duration_s is not None else math.inf
        elif kind == "delay":
            self.delay_s = fault.amount_ms / 1000.0
            self.delay_until = now + (fault.duration_s if fault.duration_s is not None else math.inf)
        elif kind == "corrupt":
            self.corrupt_next = True
        elif kind == "gap":
            self.gap_symbols.add(fault.symbol)
        elif kind == "badchecksum":
            self.badchecksum_symbols.add(fault.symbol)
        elif kind == "reject":
            self.reject_next = True
        elif kind == "lifetime":
            self.server._spawn(self.server.lifetime_close(self))
        elif kind == "notice":
            self.server.send_notice(self)

    def snapshot(self) -> ConnectionStats:
        """Immutable statistics of this connection (stream stats are copied)."""
        return ConnectionStats(
            conn_id=self.conn_id,
            exchange=self.server.name,
            path=self.path,
            open=self.is_open,
            opened_at_s=self.opened_at,
            closed_at_s=self.closed_at,
            close_code=self.close_code,
            close_reason=self.close_reason,
            frames_sent=self.frames_sent,
            frames_received=self.frames_received,
            stalled=self.stalled,
            pings_sent=self.pings_sent,
            pongs_received=self.pongs_received,
            subscriptions=tuple(self.subscriptions),
            streams={
                k: StreamStats(**{f: getattr(v, f) for f in StreamStats.__slots__})
                for k, v in self.streams.items()
            },
        )


_conn_ids = itertools.count(1)


class ExchangeServer:
    """Base class of one simulated exchange (subclasses: Binance spot/USDⓈ-M/COIN-M, OKX).

    Attributes:
        name: exchange id (``binance``, ``binanceusdm``, ``binancecoinm``, ``okx``).
        hosts: (class attribute) every real base URL the exchange uses, without trailing slash (REST
            ``https://...``, WebSocket ``wss://...:port``); the runner maps them to this server's local bases (plus
            the ``host_paths`` prefix of that host, if any).
        rest_limit_override: ``(weight, seconds)`` from ``SimConfig.rest_limits`` (``--rest-limit``), or ``None``
            for the documented limits.
        connections: open connections by id.
        closed_connections: bounded history (last 1000) of closed connections.
        sources: market sources by exchange-native symbol (created on first use).
        port: bound port once started (kept through an outage).
        listening: False while an ``outage`` fault holds the exchange down.
        outages: ``outage`` faults started so far.
    """

    name = "base"
    hosts: ClassVar[tuple[str, ...]] = ()
    #: a path prefix the local base of some host carries (default none): see ``BinanceServer.host_paths``
    host_paths: ClassVar[dict[str, str]] = {}
    market_kind = "spot"
    #: whether ``SimConfig.replay_files`` (hftbacktest-format Binance captures) can feed this exchange
    uses_replay_files = True
    #: its book updates carry a checksum, so the ``badchecksum`` fault means something (OKX)
    book_checksums: ClassVar[bool] = False
    #: fault kinds this exchange's protocol has no counterpart for (no shutdown notice, no checksum, no documented
    #: id restart): injected, they are counted and change nothing; the demo's fault cycle skips them
    inert_faults: ClassVar[frozenset[str]] = frozenset()
    #: every outgoing WebSocket frame is sent binary, as :meth:`encode_frame` makes it (HTX gzip); default: text
    binary_frames: ClassVar[bool] = False

    def __init__(
        self, config: SimConfig, clock: Clock, mode: str = "replay", speed: float = 1.0, seed: int = 0
    ) -> None:
        self.config = config
        # an exchange the config does not mention gets its registered defaults (configs written before it existed)
        spec = registry.specs().get(self.name)
        rules = config.rules.get(self.name) or (spec.rules if spec is not None else None)
        if rules is None:
            raise KeyError(f"no rules for simulator exchange {self.name!r}")
        self.rules: ExchangeRules = rules
        self._captured = config.capture_sources.get(self.name, {})
        served = config.symbols.get(self.name) or (spec.symbols if spec is not None else ())
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys((*served, *self._captured)))
        self.rest_limit_override: tuple[int, float] | None = config.rest_limits.get(self.name)
        self.clock = clock
        self.mode = mode
        self.speed = speed
        self.seed = seed
        self.connections: dict[int, SimConnection] = {}
        self.closed_connections: collections.deque[SimConnection] = collections.deque(maxlen=1000)
        self.sources: dict[str, MarketSource] = {}
        self.port = 0
        self.host = "127.0.0.1"
        self.started_at = clock.monotonic()
        self.listening = False
        self.outages = 0
        self._outage_until = -math.inf
        self._changed = asyncio.Event()
        self._bg: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        # counters behind GET /_sim/stats
        self.connections_total = 0
        self.frames_by_stream: dict[str, int] = {}
        self.rest_requests_total = 0
        self.rest_weight_total = 0
        self.rest_by_path: dict[str, int] = {}
        self.limited: dict[int, int] = {429: 0, 418: 0}
        self.faults_injected: dict[str, int] = {}
        self._tick_callbacks: dict[float, list[Callable[[int], None]]] = {}
        self.app = web.Application(middlewares=[self._unknown_paths])
        self.app.router.add_get("/_sim/stats", self._rest_sim_stats)
        self.setup_routes(self.app)

    # ---- subclass hooks ----
    @classmethod
    def trade_stream_key(cls, native: str) -> str:
        """The ``/_sim/stats`` stream key of exchange-native ``native``'s trade stream (Binance
        ``btcusdt@trade``, OKX ``trades:BTC-USDT``)."""
        raise NotImplementedError

    @classmethod
    def book_stream_prefix(cls, native: str) -> str:
        """The prefix of the ``/_sim/stats`` stream key of ``native``'s book stream (Binance ``btcusdt@depth``,
        OKX ``books:BTC-USDT``)."""
        raise NotImplementedError

    def setup_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def encode_frame(self, text: str) -> bytes:
        """The binary frame that carries ``text`` when :attr:`binary_frames` is set (default: its UTF-8 bytes)."""
        return text.encode()

    async def send_ping(self, conn: SimConnection, ts_ms: int) -> None:
        """Send one keepalive ping on ``conn`` (every ``rules.ping_interval_s``; unanswered for
        ``rules.pong_timeout_s`` closes it). Default: a WebSocket protocol ping carrying ``ts_ms``; an exchange with
        application pings (HTX ``{"ping": ts}``) overrides it and clears ``conn.ping_outstanding_since`` itself
        when the answer comes."""
        await conn.ws.ping(str(ts_ms).encode())

    async def on_text(self, conn: SimConnection, text: str) -> None:
        raise NotImplementedError

    def send_notice(self, conn: SimConnection) -> None:
        raise NotImplementedError

    def unknown_path(self, request: web.Request, status: int) -> web.Response:
        """The answer to a REST path (404) or method (405) this exchange does not serve. Subclasses answer with the
        exchange's own JSON error shape; the base answers ``{"code": status, "msg": ...}`` as JSON."""
        body = {"code": status, "msg": f"Path {request.path}, Method {request.method} is invalid"}
        return web.json_response(body, status=status)

    @web.middleware
    async def _unknown_paths(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            self.count_rest(request.path, 0)
            return self.unknown_path(request, 404)
        except web.HTTPMethodNotAllowed:
            self.count_rest(request.path, 0)
            return self.unknown_path(request, 405)

    async def lifetime_close(self, conn: SimConnection) -> None:
        await conn.close(1001, "connection lifetime reached")

    async def idle_close(self, conn: SimConnection) -> None:
        await conn.close(1000, "idle")

    def neutral_symbol(self, symbol: str) -> tuple[str, str]:
        """``(market kind, exchange-neutral symbol)`` of a native symbol, for the replay lookup."""
        return self.market_kind, symbol

    def replay_recordings(self) -> list[str | Path]:
        """The recordings (shipped names or user files) the served symbols replay."""
        out: list[str | Path] = []
        if not self.uses_replay_files:
            return out
        for symbol in self.symbols:
            if symbol in self._captured:  # served from the user's capture: the shipped file is not needed
                continue
            key = self.neutral_symbol(symbol)
            rec = self.config.replay_files.get(key) or REPLAY_FILES.get(key)
            if rec is not None and rec not in out:
                out.append(rec)
        return out

    # ---- lifecycle ----
    async def start(self, host: str, port: int) -> None:
        """Bind ``host:port`` (0 = ephemeral) and serve.

        In replay mode the user's own recordings (``SimConfig.replay_files``) of the served symbols are parsed
        first, so a bad file fails here rather than on the first subscription.

        Raises:
            ValueError: a user recording has nothing to replay.
            OSError: the port cannot be bound.
        """
        if self.mode == "replay":
            # parse every recording this server replays in a worker thread, before listening: a bad file fails
            # here, and the first subscription does not block the event loop (and every client in it) for the
            # second or so a recording takes to parse
            for recording in self.replay_recordings():
                await asyncio.to_thread(preload_replay, recording)
        self.host = host
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._listen(port)
        self.started_at = self.clock.monotonic()

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self._site = site
        self.port = server.sockets[0].getsockname()[1]
        self.listening = True
        self.notify()

    def begin_outage(self, duration_s: float) -> None:
        """Make the exchange unreachable for ``duration_s`` seconds (clock time), now.

        The listening socket is closed (new TCP connects are refused), every open connection (WebSocket and REST
        keep-alive) is aborted without a close frame, then after ``duration_s`` the server listens again on the
        same port. Market sources keep running. A second outage during one extends it to the later end.
        """
        self._outage_until = max(self._outage_until, self.clock.monotonic() + duration_s)
        if not self.listening:
            return
        self.outages += 1
        self.listening = False
        site = self._site
        if site is not None and site._server is not None:
            site._server.close()  # stop accepting now; open sockets are cut below
        for conn in list(self.connections.values()):
            conn.abort("fault: outage")
        http = self._runner.server if self._runner is not None else None
        for handler in http.connections if http is not None else ():
            if handler.transport is not None:
                handler.transport.abort()
        self.notify()
        self._spawn(self._end_outage())

    async def _end_outage(self) -> None:
        while (wait := self._outage_until - self.clock.monotonic()) > 0:
            await self.clock.sleep(wait)
        if self._site is not None:
            with contextlib.suppress(RuntimeError):
                await self._site.stop()  # unregister the closed site from the runner
            self._site = None
        await self._listen(self.port)

    async def stop(self) -> None:
        """Close every connection, stop sources and the HTTP server."""
        for conn in list(self.connections.values()):
            conn.abort("simulator stopped")
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    # ---- periodic streams ----
    def on_tick(self, interval_s: float, callback: Callable[[int], None]) -> None:
        """Call ``callback(ts_ms)`` at every multiple of ``interval_s`` seconds on the clock (``ts_ms``: the clock's
        wall time then), from now until the server stops. One task per distinct interval; ticks missed because
        the loop was busy are skipped, never bunched. This is how documented stream speeds (Binance "Update Speed:
        100ms") are kept: a client measures a gap of ``interval_s`` between two pushes."""
        callbacks = self._tick_callbacks.get(interval_s)
        if callbacks is None:
            callbacks = self._tick_callbacks[interval_s] = []
            self._spawn(self._tick_loop(interval_s, callbacks))
        callbacks.append(callback)

    async def _tick_loop(self, interval_s: float, callbacks: list[Callable[[int], None]]) -> None:
        clock = self.clock
        n = math.floor(clock.monotonic() / interval_s) + 1
        while True:
            wait = n * interval_s - clock.monotonic()
            if wait > 0:
                await clock.sleep(wait)
            n = max(n + 1, math.floor(clock.monotonic() / interval_s) + 1)
            ts_ms = clock.time_ns() // 1_000_000
            for cb in list(callbacks):
                try:
                    cb(ts_ms)
                except Exception:  # one bad stream must not stop the others' pacing
                    log.exception("%s: tick callback failed", self.name)

    # ---- sources ----
    def make_market_source(self, symbol: str) -> MarketSource:
        """A new source for served native ``symbol`` (replay where a recording exists, else synthetic)."""
        kind, neutral = self.neutral_symbol(symbol)
        return make_source(
            kind, neutral, self.mode, self.seed, self.config.synthetic_rate_hz, self.config.replay_files
        )

    def source(self, symbol: str) -> MarketSource | None:
        """The running source of native ``symbol`` (started on first call); None if the symbol is not
        served."""
        src = self.sources.get(symbol)
        if src is None:
            if symbol not in self.symbols:
                return None
            captured = self._captured.get(symbol)
            src = captured() if captured is not None else self.make_market_source(symbol)
            self.sources[symbol] = src
            self.attach_source(symbol, src)
            self._spawn(src.run(self.clock, self.speed))
        return src

    def attach_source(self, symbol: str, src: MarketSource) -> None:
        """Register the exchange's fan-out listener on a new source."""
        raise NotImplementedError

    # ---- connections ----
    async def accept(self, request: web.Request) -> tuple[web.WebSocketResponse, SimConnection]:
        ws = web.WebSocketResponse(autoping=False, heartbeat=None, max_msg_size=self.rules.max_frame_bytes)
        await ws.prepare(request)
        conn = SimConnection(next(_conn_ids), self, ws, request)
        self.connections[conn.conn_id] = conn
        self.connections_total += 1
        self.notify()
        return ws, conn

    def _on_closed(self, conn: SimConnection) -> None:
        self.connections.pop(conn.conn_id, None)
        self.closed_connections.append(conn)
        self.notify()

    def all_connections(self) -> list[SimConnection]:
        """Open and (recently) closed connections, oldest first."""
        return sorted([*self.closed_connections, *self.connections.values()], key=lambda c: c.conn_id)

    def notify(self) -> None:
        """Wake :meth:`wait_until` callers (state changed: connect, subscribe, close, outage start/end)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], object], within_s: float = 5.0) -> None:
        """Wait until ``predicate()`` is truthy, re-checking on every state change (connect, subscribe,
        close, outage start/end, pong received).

        Raises:
            TimeoutError: not true within ``within_s`` seconds (real time).
        """

        async def _loop() -> None:
            while not predicate():
                await self._changed.wait()

        await asyncio.wait_for(_loop(), within_s)

    async def wait_subscribed(self, key: str, within_s: float = 5.0) -> SimConnection:
        """Wait until an open connection is subscribed to ``key`` (Binance stream / OKX
        ``channel:instId``)."""
        found: list[SimConnection] = []

        def check() -> bool:
            found[:] = [c for c in self.connections.values() if key in c.subscriptions]
            return bool(found)

        await self.wait_until(check, within_s)
        return found[0]

    def inject(self, fault: Fault, connection: int | None = None) -> None:
        """Apply ``fault`` now to connection id ``connection`` or to every open connection.

        Raises:
            KeyError: ``connection`` is not an open connection.
            ValueError: an ``outage`` (it takes the whole exchange down) aimed at one connection.
        """
        if connection is not None and fault.kind != "outage" and connection not in self.connections:
            raise KeyError(connection)
        self.faults_injected[fault.kind] = self.faults_injected.get(fault.kind, 0) + 1
        if fault.kind == "outage":
            if connection is not None:
                raise ValueError("an outage takes the whole exchange down; do not name a connection")
            self.begin_outage(fault.duration_s or 0.0)
            return
        if fault.kind == "seqreset":
            for sym, src in self.sources.items():
                if fault.symbol in (None, sym):
                    src.reset_sequence()
            return
        targets = (
            [self.connections[connection]] if connection is not None else list(self.connections.values())
        )
        for conn in targets:
            conn.apply_fault(fault)

    # ---- counters (GET /_sim/stats) ----
    def count_rest(self, path: str, weight: int) -> None:
        """Count one REST request on ``path`` charged ``weight`` (request weight, or 1 per request where the
        exchange counts requests). Protocol modules call it where they charge their rate limit."""
        self.rest_requests_total += 1
        self.rest_weight_total += weight
        if path in self.rest_by_path or len(self.rest_by_path) < 1000:
            self.rest_by_path[path] = self.rest_by_path.get(path, 0) + 1

    def count_limited(self, status: int) -> None:
        """Count one REST answer refused by a rate limit (HTTP ``status`` 429 or 418)."""
        self.limited[status] = self.limited.get(status, 0) + 1

    def count_frame(self, stream: str) -> None:
        """Count one data frame queued on ``stream`` (called by :meth:`SimConnection.send_data`)."""
        counts = self.frames_by_stream
        if stream in counts or len(counts) < 10_000:
            counts[stream] = counts.get(stream, 0) + 1

    def sim_stats(self) -> dict[str, Any]:
        """JSON-ready counters served at ``GET /_sim/stats``::

            {"exchange", "port", "listening", "outages",
             "connections": {"open": n, "total": n},
             "frames_sent": {stream: frames queued to clients},
             "rest": {"requests": n, "weight": n, "by_path": {path: n}, "429": n, "418": n},
             "faults": {kind: n}, "sources": {symbol: {"last_update_id", "last_trade_id", "events"}}}

        Frames withheld by faults are counted per connection in :meth:`stats` (``stalled``, ``skipped``).
        """
        return {
            "exchange": self.name,
            "port": self.port,
            "listening": self.listening,
            "outages": self.outages,
            "connections": {"open": len(self.connections), "total": self.connections_total},
            "frames_sent": dict(self.frames_by_stream),
            "rest": {
                "requests": self.rest_requests_total,
                "weight": self.rest_weight_total,
                "by_path": dict(self.rest_by_path),
                "429": self.limited.get(429, 0),
                "418": self.limited.get(418, 0),
            },
            "faults": dict(self.faults_injected),
            "sources": self._source_counters(),
        }

    def _source_counters(self) -> dict[str, dict[str, int]]:
        """Per served symbol: the last update id and trade id handed out, events emitted."""
        return {
            s: {
                "last_update_id": src.last_update_id,
                "last_trade_id": src.last_trade_id,
                "events": src.events_emitted,
            }
            for s, src in self.sources.items()
        }

    async def _rest_sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim_stats())

    def stats(self) -> dict[str, Any]:
        """Snapshot: connections (open and recent closed), per-source counters, REST counters."""
        return {
            "exchange": self.name,
            "port": self.port,
            "listening": self.listening,
            "outages": self.outages,
            "connections": [c.snapshot() for c in self.all_connections()],
            "sources": self._source_counters(),
        }
