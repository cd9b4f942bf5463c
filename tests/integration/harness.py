"""End-to-end rig: the simulator on 127.0.0.1 and an :class:`ExchangeManager` pointed at it, with short timings.

Everything the manager delivers is recorded by inline (sync) bus callbacks, so tests can compare it with what the
simulator says it SENT (``sim.stats()``: per connection, per stream, first/last sequence or trade id).

Timings are shortened so faults are detected and repaired in well under a second or two of real time:
reconnect backoff 20-200 ms, data watchdog 0.4 s minimum idle / 1.5 s first data, synthetic markets at
``RATE_HZ`` events per second per symbol.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pytest

import cryptolink.manager as manager_mod
from cryptolink.bus import EVENTS_CHANNEL
from cryptolink.engine import ConnectionEvent, ConnectionEventType, ConnectionState, ManagedConnection
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.manager import ExchangeManager
from cryptolink.models import GAPS_CHANNEL, BookUpdate, Gap, Trade
from cryptolink.simulator import BINANCE_SPOT_RULES, SimConfig, Simulator
from cryptolink.simulator import registry as sim_registry
from cryptolink.simulator.server import ExchangeServer

RATE_HZ = 150.0

#: name -> (exchange id (ccxt, as events carry it), manager market, unified symbols, native symbols)
TARGETS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "binance": ("binance", "spot", ("BTC/USDT", "ETH/USDT"), ("BTCUSDT", "ETHUSDT")),
    "binanceusdm": ("binanceusdm", "perpetual", ("BTC/USDT:USDT", "ETH/USDT:USDT"), ("BTCUSDT", "ETHUSDT")),
    "okx": ("okx", "spot", ("BTC/USDT", "ETH/USDT"), ("BTC-USDT", "ETH-USDT")),
    "binancecoinm": (
        "binancecoinm",
        "perpetual",
        ("BTC/USD:BTC", "ETH/USD:ETH"),
        ("BTCUSD_PERP", "ETHUSD_PERP"),
    ),
    "bybit": ("bybit", "spot", ("BTC/USDT", "ETH/USDT"), ("BTCUSDT", "ETHUSDT")),
    "bitget": ("bitget", "spot", ("BTC/USDT", "ETH/USDT"), ("BTCUSDT", "ETHUSDT")),
    "gate": ("gate", "spot", ("BTC/USDT", "ETH/USDT"), ("BTC_USDT", "ETH_USDT")),
    "htx": ("htx", "spot", ("BTC/USDT", "ETH/USDT"), ("btcusdt", "ethusdt")),
}

FAST_RECONNECT = {"initial_delay_s": 0.02, "multiplier": 2.0, "max_delay_s": 0.2, "reset_after_s": 1.0}
FAST_WATCHDOG = {"first_data_timeout_s": 1.5, "min_idle_s": 0.4, "max_idle_s": 3.0}


def sim_config(**rules: dict[str, Any]) -> SimConfig:
    """Every registered exchange's documented rules, with a generous inbound limit on Binance spot; per-exchange
    overrides ``okx={...}``."""
    base = {name: spec.rules for name, spec in sim_registry.specs().items()}
    base["binance"] = replace(BINANCE_SPOT_RULES, max_in_msgs_per_s=50)
    for exch, kw in rules.items():
        base[exch] = replace(base[exch], **kw)
    return SimConfig(rules=base, synthetic_rate_hz=RATE_HZ)


def trade_stream(name: str, native: str) -> str:
    """The simulator's stream key of a symbol's trades (Binance stream name, OKX ``channel:instId``...)."""
    return sim_registry.get(name).server.trade_stream_key(native)


def book_stream_prefix(name: str, native: str) -> str:
    return sim_registry.get(name).server.book_stream_prefix(native)


@dataclass
class Recorder:
    """What the manager delivered, in order (filled by inline bus callbacks). Every callback sets ``changed``,
    which :meth:`Rig.until` waits on: conditions are re-checked when something was delivered, never polled."""

    trades: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    books: dict[tuple[str, str], list[tuple[int, bool]]] = field(default_factory=dict)
    events: list[ConnectionEvent] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    backfilled: int = 0
    book_checks: list[tuple[str, str, bool]] = field(default_factory=list)
    on_book: Callable[[BookUpdate], None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def trade(self, t: Trade) -> None:
        assert t.sequence is not None
        self.trades.setdefault((t.exchange, t.symbol), []).append(t.sequence)
        self.backfilled += t.backfilled
        self.changed.set()

    def book(self, u: BookUpdate) -> None:
        self.books.setdefault((u.exchange, u.symbol), []).append((u.sequence, u.is_snapshot))
        if self.on_book is not None:
            self.on_book(u)
        self.changed.set()

    def gap(self, g: Gap) -> None:
        self.gaps.append(g)
        self.changed.set()

    def event(self, e: ConnectionEvent) -> None:
        self.events.append(e)
        if len(self.events) > 5000:
            del self.events[:1000]
        self.changed.set()

    def count(self, type_: ConnectionEventType, feed: str) -> int:
        """Events of ``type_`` from the connections of feed ``feed``."""
        return sum(1 for e in self.events if e.type is type_ and e.connection_id.startswith(feed + "-"))


@dataclass
class Rig:
    """One running simulator + manager; see :func:`rig`."""

    sim: Simulator
    manager: ExchangeManager
    rec: Recorder
    names: tuple[str, ...]

    def server(self, name: str) -> ExchangeServer:
        return self.sim.servers[name]

    def conns(self, name: str) -> list[ManagedConnection]:
        return list(self.manager.feeds[name].connections.values())

    def conn(self, name: str) -> ManagedConnection:
        (only,) = self.conns(name)
        return only

    def unified(self, name: str, i: int = 0) -> str:
        return TARGETS[name][2][i]

    def native(self, name: str, i: int = 0) -> str:
        return TARGETS[name][3][i]

    def exchange_id(self, name: str) -> str:
        return TARGETS[name][0]

    def delivered_trades(self, name: str, i: int = 0) -> list[int]:
        return list(self.rec.trades.get((self.exchange_id(name), self.unified(name, i)), []))

    def delivered_books(self, name: str, i: int = 0) -> list[tuple[int, bool]]:
        return list(self.rec.books.get((self.exchange_id(name), self.unified(name, i)), []))

    def sim_conns(self, name: str) -> list[Any]:
        """Simulator-side connection snapshots of ``name`` (open and closed), oldest first."""
        return list(self.sim.stats()[name]["connections"])

    def source(self, name: str, i: int = 0) -> Any:
        return self.server(name).sources[self.native(name, i)]

    async def until(self, predicate: Callable[[], object], within_s: float = 10.0, what: str = "") -> None:
        """Wait until ``predicate`` is true, re-checking it each time the manager delivered something (trades,
        book updates, gaps, connection events); fail with ``what`` after ``within_s`` seconds."""
        changed = self.rec.changed

        async def loop() -> None:
            while not predicate():
                changed.clear()
                await changed.wait()

        try:
            await asyncio.wait_for(loop(), within_s)
        except TimeoutError:
            pytest.fail(f"timed out after {within_s} s waiting for: {what or predicate}")

    # ----------------------------------------------------------------------------------------- conditions

    def all_confirmed(self, name: str) -> bool:
        conns = self.conns(name)
        return bool(conns) and all(
            c.state is ConnectionState.CONNECTED
            and c.stats().subscriptions_pending == 0
            and c.stats().subscriptions_confirmed == len(c.subscriptions.desired)
            for c in conns
        )

    def books_live(self, name: str) -> bool:
        health = self.manager.feeds[name].book_health()
        return bool(health) and all(b.state == "live" for b in health)

    async def healthy(self, name: str, within_s: float = 10.0) -> None:
        """Connected, every subscription confirmed, every book live."""
        await self.until(
            lambda: self.all_confirmed(name) and self.books_live(name), within_s, f"{name} healthy"
        )

    async def flowing(self, name: str, within_s: float = 10.0) -> None:
        """Fresh data on every stream of ``name``: a new trade and a new book update per symbol."""
        before_t = [len(self.delivered_trades(name, i)) for i in range(2)]
        before_b = [len(self.delivered_books(name, i)) for i in range(2)]
        await self.until(
            lambda: all(
                len(self.delivered_trades(name, i)) > before_t[i]
                and len(self.delivered_books(name, i)) > before_b[i]
                for i in range(2)
            ),
            within_s,
            f"{name}: trades and book updates flowing on both symbols",
        )

    async def caught_up(self, name: str, i: int = 0, within_s: float = 5.0) -> int:
        """Wait until the manager delivered the last trade id the simulator has sent so far; returns it."""
        target = self.source(name, i).last_trade_id
        await self.until(
            lambda: (self.delivered_trades(name, i) or [0])[-1] >= target,
            within_s,
            f"{name}: trade id {target} delivered",
        )
        return int(target)

    # ------------------------------------------------------------------------------------------- checks

    def sent_trade_ranges(self, name: str, i: int = 0) -> list[tuple[int, int, bool, Any]]:
        """Per simulator connection that carried the symbol's trades: ``(first, last, open, snapshot)``."""
        key = trade_stream(name, self.native(name, i))
        out = []
        for c in self.sim_conns(name):
            st = c.streams.get(key)
            if st is None or st.first_id is None:
                continue
            assert st.non_increasing == 0, f"{name} conn {c.conn_id}: simulator sent trade ids out of order"
            assert st.frames == st.last_id - st.first_id + 1, "simulator trade ids are contiguous"
            out.append((st.first_id, st.last_id, c.open, c))
        return out

    def assert_trades_exact(self, name: str, i: int = 0, *, rotation: bool = False) -> None:
        """Nothing twice; nothing lost while connected.

        Every trade id the simulator sent on a connection is delivered, except a TAIL of a connection that was
        cut (frames in flight when the socket died). With ``rotation``: no id is missing at all between the
        first and the last sent (make before break leaves no gap).
        """
        got = self.delivered_trades(name, i)
        assert got == sorted(set(got)), f"{name}: duplicate or out-of-order trades delivered"
        have = set(got)
        ranges = self.sent_trade_ranges(name, i)
        assert ranges, f"{name}: simulator sent no trades"
        upto = got[-1] if got else 0
        if rotation:
            lo, hi = min(r[0] for r in ranges), min(max(r[1] for r in ranges), upto)
            sent = set().union(*(range(a, min(b, hi) + 1) for a, b, _, _ in ranges))
            missing = sorted(sent - have)
            assert not missing, f"{name}: {len(missing)} trade ids lost across rotation: {missing[:10]}"
            assert set(range(lo, hi + 1)) == sent, "sim connections overlap with no gap in what was sent"
            return
        for first, last, is_open, c in ranges:
            last = min(last, upto) if is_open else last
            missing = [t for t in range(first, last + 1) if t not in have]
            if is_open:
                assert not missing, f"{name} conn {c.conn_id}: lost {missing[:10]} while connected"
            elif missing:
                tail = list(range(last - len(missing) + 1, last + 1))
                assert missing == tail, f"{name} conn {c.conn_id}: lost {missing[:10]} mid-connection"
                assert len(missing) <= 100, f"{name} conn {c.conn_id}: lost a long tail ({len(missing)})"

    def assert_books_increasing(self, name: str) -> None:
        """Book update sequences strictly increase, except that a resync snapshot may repeat the last sequence
        when the market did not move meanwhile. (A USD-M delta that ends at the snapshot id, allowed by the rule
        ``U <= lastUpdateId <= u`` of docs/protocols/binance.md "Book sync", is covered by the snapshot and never emitted.)"""
        for i in range(2):
            ups = self.delivered_books(name, i)
            assert ups, f"{name}: no book updates"
            bad = [
                (a, b)
                for (a, snap), (b, resync) in itertools.pairwise(ups)
                if b < a or (b == a and not resync)
            ]
            assert not bad, f"{name} symbol {i}: book sequence not increasing: {bad[:5]}"

    def watch_book_matches(self, names: Iterable[str]) -> None:
        """On every delivered book update, when the client book is at the simulator's current sequence, compare
        best bid and ask with the simulator's own book (records ``(name, symbol, equal)``)."""
        index = {(self.exchange_id(n), self.unified(n, i)): (n, i) for n in names for i in range(2)}
        feeds = self.manager.feeds

        def check(u: BookUpdate) -> None:
            where = index.get((u.exchange, u.symbol))
            if where is None:
                return
            name, i = where
            src = self.server(name).sources.get(self.native(name, i))
            book = feeds[name].book(u.symbol)
            if src is None or book is None or book.last_sequence != src.last_update_id:
                return
            bids, asks = src.book.top(1)
            ours = (book.best_bid(), book.best_ask())
            theirs = (
                (Decimal(bids[0][0]), Decimal(bids[0][1])) if bids else None,
                (Decimal(asks[0][0]), Decimal(asks[0][1])) if asks else None,
            )
            self.rec.book_checks.append((name, u.symbol, ours == theirs))
            if len(self.rec.book_checks) > 10_000:
                del self.rec.book_checks[:5000]

        self.rec.on_book = check

    def book_matches(self, name: str) -> tuple[int, int]:
        """``(equal, different)`` top-of-book comparisons recorded for ``name``."""
        eq = sum(1 for n, _, ok in self.rec.book_checks if n == name and ok)
        ne = sum(1 for n, _, ok in self.rec.book_checks if n == name and not ok)
        return eq, ne


def patch_policy(monkeypatch: pytest.MonkeyPatch, adjust: Callable[[ExchangeAdapter], None]) -> None:
    """Let a test shorten adapter policies (keepalive, lifetime, frame size) of the adapters the manager makes."""
    # the manager's own reference (imported there, not re-exported: read it from the module's namespace)
    original: Callable[..., ExchangeAdapter] = vars(manager_mod)["get_adapter"]

    def make(*args: Any, **kwargs: Any) -> ExchangeAdapter:
        adapter = original(*args, **kwargs)
        adjust(adapter)
        return adapter

    monkeypatch.setattr(manager_mod, "get_adapter", make)


@contextlib.asynccontextmanager
async def rig(
    names: Iterable[str] = ("binance", "binanceusdm", "okx"),
    *,
    config: SimConfig | None = None,
    channels: tuple[str, ...] = ("trades", "book"),
    entry: dict[str, Any] | None = None,
    seed: int = 7,
) -> AsyncIterator[Rig]:
    """Start a synthetic-market simulator and a manager subscribed to two symbols per exchange."""
    names = tuple(names)
    rec = Recorder()
    async with Simulator(
        exchanges=[n for n in names], mode="synthetic", seed=seed, config=config or sim_config()
    ) as sim:
        ep = sim.endpoints()
        b = ExchangeManager.builder().runtime(seed=seed)
        for n in names:
            exch, market, symbols, _ = TARGETS[n]
            extra = {"reconnect": FAST_RECONNECT, "watchdog": FAST_WATCHDOG, **(entry or {})}
            b.exchange(
                n,
                exchange=exch,
                market=market,
                symbols=list(symbols),
                channels=list(channels),
                ws_url=ep[n]["ws_url"],
                rest_url=ep[n]["rest_url"],
                **extra,
            )
        m = b.build()
        m.on("trades", rec.trade)
        m.on("book", rec.book)
        m.on(GAPS_CHANNEL, rec.gap)
        m.on(EVENTS_CHANNEL, rec.event)
        r = Rig(sim, m, rec, names)
        await m.start()
        try:
            yield r
        finally:
            await asyncio.wait_for(m.stop(), 10.0)
