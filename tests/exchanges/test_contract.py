"""The adapter contract, adapter side, on small made-up adapters: base helpers (decode wrapper, bounded maps,
symbol cache, plan_connections and request batching from policy data), binary frames with a bound on their
inflated size, an exchange-specific book checksum used by the book sync, server-assigned channel ids kept per
session, a REST step before connecting, and server pings that must be answered.

The engine side of the same contract (inflating before ``decode``, one decoder per session, making the REST
call, sending ``ReplyRequired`` frames, counting refusals) is tested in tests/engine.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Literal

import msgspec
import pytest

from cryptolink.book.checksum import book_checksum, crc32_levels
from cryptolink.book.orderbook import BookState
from cryptolink.book.sync import BookSync, ResyncCause
from cryptolink.exchanges.base import (
    Ack,
    BookMessage,
    BookSyncSpec,
    BoundedMap,
    ChecksumSpec,
    ConnectionPolicy,
    ConnectionSpec,
    Decoded,
    DecodeError,
    ExchangeAdapter,
    FrameCompression,
    FrameDecoder,
    Heartbeat,
    InflateRefused,
    Instrument,
    KeepalivePolicy,
    OutboundRequest,
    ReplyRequired,
    RestRequest,
    SequenceModel,
    SnapshotSource,
    SymbolCache,
    decode_json,
    inflate,
)
from cryptolink.models import Channel, Market, Side, Subscription, Trade
from cryptolink.symbols import parse_unified

# ------------------------------------------------------------------------------------------- made-up adapters


def kraken_like_checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """A made-up exchange rule unlike the default: asks first, then bids, each price and size with the decimal
    point removed and leading zeros stripped, concatenated without separators; unsigned CRC32."""

    def digits(text: str) -> str:
        return text.replace(".", "").lstrip("0")

    payload = "".join(digits(p) + digits(s) for p, s in [*asks, *bids])
    return zlib.crc32(payload.encode())


class _Msg(msgspec.Struct):
    ping: int | None = None
    event: str | None = None
    seq: int | None = None
    prev: int | None = None
    snapshot: bool = False
    symbol: str = ""
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    checksum: int | None = None


_msg_decoder = msgspec.json.Decoder(_Msg)


class MadeUpAdapter(ExchangeAdapter):
    """A small exchange: ``BASE/QUOTE`` <-> ``BASE-QUOTE``, books on their own route, JSON frames
    ``{"ping":N}`` (answer ``{"pong":N}``) and ``{"seq":..,"prev":..,"bids":..,"asks":..,"checksum":..}``."""

    exchange = "madeup"
    market = Market.SPOT
    ws_base_url = "wss://ws.madeup.example"
    rest_base_url = "https://api.madeup.example"
    policy = ConnectionPolicy(
        keepalive=KeepalivePolicy(protocol_ping_interval_s=None),
        max_streams_per_connection=4,
        max_books_per_connection=2,
        max_subscriptions_per_request=3,
        max_request_bytes=256 + 100,
    )
    book_sync = BookSyncSpec(
        source=SnapshotSource.WEBSOCKET,
        sequence=SequenceModel.LINKED,
        checksum=ChecksumSpec(depth=2, signed=False, compute=kraken_like_checksum),
    )

    def exchange_symbol(self, symbol: str) -> str:
        base, quote, settle, _ = parse_unified(symbol)
        if settle is not None:
            raise ValueError(f"madeup: {symbol!r} is not a spot symbol")
        return f"{base}-{quote}"

    def route(self, subscription: Subscription) -> str:
        return "books" if subscription.channel is Channel.BOOK else ""

    def connection_url(self, route: str) -> str:
        return f"{self.ws_base_url}/{route or 'public'}"

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        out: list[OutboundRequest] = []
        for chunk in self.request_batches(subscriptions, lambda s: len(self._topic(s)) + 3):
            rid = next_id + len(out)
            frame = json.dumps({"op": op, "id": rid, "topics": [self._topic(s) for s in chunk]})
            out.append(OutboundRequest(frame, rid, op, chunk))
        return out

    def _topic(self, sub: Subscription) -> str:
        return f"{sub.channel.value}:{self.exchange_symbol(sub.symbol)}"

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        m = decode_json(_msg_decoder, frame, "madeup", "malformed frame")
        if m.ping is not None:
            return [ReplyRequired(json.dumps({"pong": m.ping}))]
        if m.seq is None:
            return []
        sym = m.symbol.replace("-", "/")
        return [
            BookMessage(
                sym, m.symbol, m.snapshot, m.bids, m.asks, m.seq, m.seq, m.prev, m.checksum, None, receipt_ns
            )
        ]

    def instruments_request(self) -> RestRequest:
        return RestRequest("/instruments", {})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        return []


# ------------------------------------------------------------------------------------------- base helpers


def test_decode_json_turns_every_msgspec_error_into_decode_error() -> None:
    assert decode_json(_msg_decoder, b'{"ping":5}', "madeup", "x").ping == 5
    for bad in (b"not json", b'{"ping":"five"}', b"[1]", b""):
        with pytest.raises(DecodeError, match=r"^madeup: bad frame: "):
            decode_json(_msg_decoder, bad, "madeup", "bad frame")
    # a Raw slice of a larger frame is accepted too
    outer = msgspec.json.decode(b'{"d":{"ping":7}}', type=dict[str, msgspec.Raw])
    assert decode_json(_msg_decoder, outer["d"], "madeup", "x").ping == 7


def test_bounded_map_evicts_the_oldest_and_counts_it() -> None:
    m: BoundedMap[int, str] = BoundedMap(2)
    m.put(1, "a")
    m.put(2, "b")
    m.put(1, "a2")  # replacing moves 1 to the newest position, evicts nothing
    assert m.evicted == 0 and len(m) == 2
    m.put(3, "c")  # full: the oldest (2) goes
    assert m.evicted == 1 and 2 not in m and m.get(1) == "a2" and m.items() == [(1, "a2"), (3, "c")]
    assert m.pop(1) == "a2" and m.pop(1) is None and len(m) == 1
    with pytest.raises(ValueError):
        BoundedMap[int, int](0)


def test_symbol_cache_pins_subscribed_symbols_and_bounds_guesses() -> None:
    cache = SymbolCache(max_guesses=2)
    cache.pin("BTC/USDT", "BTCUSDT")
    guesses: list[str] = []

    def guess(ex: str) -> str:
        guesses.append(ex)
        return ex.lower()

    assert cache.unified("BTCUSDT", guess) == "BTC/USDT" and guesses == []  # pinned wins, no guess
    assert cache.unified("AAA", guess) == "aaa" and cache.unified("AAA", guess) == "aaa"
    assert guesses == ["AAA"]  # cached
    cache.unified("BBB", guess)
    cache.unified("CCC", guess)  # third guess: the oldest is evicted and counted
    assert cache.evicted == 1
    assert cache.unified("AAA", guess) == "aaa" and guesses == ["AAA", "BBB", "CCC", "AAA"]
    assert cache.exchange_symbol("BTC/USDT") == "BTCUSDT" and cache.exchange_symbol("X/Y") is None
    for _ in range(1000):
        cache.unified(f"S{_}", guess)
    assert len(cache) == 3  # one pinned + two guesses, however many unknown ids arrive


def test_policy_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_streams_per_connection"):
        ConnectionPolicy(KeepalivePolicy(), max_streams_per_connection=0)
    with pytest.raises(ValueError, match="max_books_per_connection"):
        ConnectionPolicy(KeepalivePolicy(), max_books_per_connection=0)
    with pytest.raises(ValueError, match="max_request_bytes"):
        ConnectionPolicy(KeepalivePolicy(), max_request_bytes=-1)
    with pytest.raises(ValueError, match="max_subscriptions_per_request"):
        ConnectionPolicy(KeepalivePolicy(), max_subscriptions_per_request=0)


def test_plan_connections_dedupes_validates_routes_and_chunks_from_policy_data() -> None:
    ad = MadeUpAdapter()
    subs = [Subscription(ch, f"C{i}/USD") for i in range(5) for ch in (Channel.TRADES, Channel.BOOK)]
    plan = ad.plan_connections(subs + subs[:3])
    public = [s for s in plan if s.route == ""]
    books = [s for s in plan if s.route == "books"]
    # 5 trades in chunks of 4 (max_streams_per_connection); 5 books in chunks of 2 (max_books_per_connection)
    assert [len(s.subscriptions) for s in public] == [4, 1]
    assert [len(s.subscriptions) for s in books] == [2, 2, 1]
    assert {s.url for s in public} == {"wss://ws.madeup.example/public"}
    assert {s.url for s in books} == {"wss://ws.madeup.example/books"}
    # every subscription exactly once, input order kept within a route
    assert [x for s in public for x in s.subscriptions] == [x for x in subs if x.channel is Channel.TRADES]
    assert [x for s in books for x in s.subscriptions] == [x for x in subs if x.channel is Channel.BOOK]
    assert plan[0].route == ""  # routes in order of first appearance
    with pytest.raises(ValueError, match="not a spot symbol"):
        ad.plan_connections([Subscription(Channel.TRADES, "BTC/USDT:USDT")])


def test_request_batches_obey_count_and_byte_bounds() -> None:
    ad = MadeUpAdapter()
    subs = [Subscription(Channel.TRADES, f"C{i}/USD") for i in range(7)]
    reqs = ad.subscribe_requests(subs + subs[:2], 40)
    assert [len(r.subscriptions) for r in reqs] == [3, 3, 1]  # max_subscriptions_per_request
    assert [r.request_id for r in reqs] == [40, 41, 42]
    # byte bound: 100 bytes of topics per request (256 reserved for the envelope)
    long = [Subscription(Channel.TRADES, f"{'X' * 40}{i}/USD") for i in range(3)]
    sizes = [len(ad._topic(s)) + 3 for s in long]
    assert sizes[0] + sizes[1] > 100
    reqs = ad.subscribe_requests(long, 1)
    assert [len(r.subscriptions) for r in reqs] == [1, 1, 1]
    assert [s for r in reqs for s in r.subscriptions] == long


# ------------------------------------------------------------------------------------------- binary frames

PING = b'{"ping":1723161256172}'


@pytest.mark.parametrize(
    ("compression", "compress"),
    [
        (FrameCompression.GZIP, gzip.compress),
        (FrameCompression.DEFLATE, lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS)),
    ],
)
def test_inflate_then_decode_answers_the_server_ping(
    compression: FrameCompression, compress: Callable[[bytes], bytes]
) -> None:
    """HTX-like: every frame is compressed and the server's ``{"ping":ts}`` must be answered with
    ``{"pong":ts}``."""
    frame = compress(PING)
    assert frame != PING
    raw = inflate(frame, compression, 1024)
    assert raw == PING
    assert MadeUpAdapter().decode(raw, 0) == [ReplyRequired('{"pong": 1723161256172}')]
    with pytest.raises(InflateRefused) as info:
        inflate(frame, compression, len(PING) - 1)  # one byte over the bound is refused
    assert info.value.bomb and info.value.limit_bytes == len(PING) - 1


def _zeros_bomb(gib: int = 1) -> bytes:
    """Raw deflate of ``gib`` GiB of zeros (about 1 MB), built from one compressed MiB repeated: after a full
    flush the compressor starts afresh, so identical input gives identical, byte-aligned blocks."""
    co = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = co.compress(bytes(1 << 20)) + co.flush(zlib.Z_FULL_FLUSH)
    return block * (1024 * gib) + co.flush()


def test_a_compression_bomb_is_refused_with_bounded_memory() -> None:
    body = _zeros_bomb()
    assert len(body) < 2 << 20  # 1 GiB of zeros in about 1 MB
    gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body + b"\x00" * 8  # trailer never reached
    limit = 1 << 20
    for compression, data in ((FrameCompression.DEFLATE, body), (FrameCompression.GZIP, gz)):
        tracemalloc.start()
        try:
            with pytest.raises(InflateRefused) as info:
                inflate(data, compression, limit)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert info.value.bomb and info.value.limit_bytes == limit
        assert "beyond" in str(info.value)
        assert peak < 4 * limit, peak  # inflation stopped at the bound: nowhere near 1 GiB
        assert isinstance(info.value, DecodeError)  # the engine counts and skips it like any bad frame


@pytest.mark.parametrize(
    ("compression", "data", "what"),
    [
        (FrameCompression.GZIP, gzip.compress(PING)[:-6], "truncated"),
        (FrameCompression.DEFLATE, zlib.compress(PING, wbits=-zlib.MAX_WBITS)[:-3], "truncated"),
        (FrameCompression.GZIP, b"not gzip at all", "corrupt"),
        (FrameCompression.DEFLATE, b"\xff\xff\xff\xff", "corrupt"),
        (FrameCompression.GZIP, zlib.compress(PING, wbits=-zlib.MAX_WBITS), "corrupt"),  # deflate, no header
    ],
)
def test_corrupt_or_truncated_frames_are_refused(
    compression: FrameCompression, data: bytes, what: str
) -> None:
    with pytest.raises(InflateRefused, match=what) as info:
        inflate(data, compression, 1 << 20)
    assert not info.value.bomb


# ------------------------------------------------------------------------------------------- checksum


def _book_msg(seq: int, prev: int | None, bids: list[list[str]], asks: list[list[str]], cs: int) -> bytes:
    return json.dumps(
        {"seq": seq, "prev": prev, "snapshot": prev is None, "symbol": "BTC-USD", "bids": bids, "asks": asks,
         "checksum": cs}
    ).encode()  # fmt: skip


def test_an_exchange_specific_checksum_is_what_the_book_sync_verifies() -> None:
    ad = MadeUpAdapter()
    spec = ad.book_sync.checksum
    assert spec is not None
    bids, asks = [["0.50", "1.000"], ["0.40", "2"]], [["0.60", "2.5"]]
    # the rule by hand: asks first, digits only, no leading zeros, bids after; top 2 levels per side
    expected = zlib.crc32(b"6025" + b"501000" + b"402")
    assert kraken_like_checksum(bids, asks) == expected
    assert crc32_levels(bids, asks, spec) != expected  # the default CRC32 would not match

    sync = BookSync(ad.book_sync, ad.exchange, "BTC/USD", "BTC-USD")
    sync.start()

    def feed(frame: bytes) -> list[object]:
        [msg] = ad.decode(frame, 0)
        assert isinstance(msg, BookMessage)
        return list(sync.on_message(msg))

    feed(_book_msg(1, None, bids, asks, expected))
    assert sync.state is BookState.LIVE and sync.checksum_failures == 0
    assert book_checksum(sync.book, spec) == expected
    # an update whose checksum follows the rule keeps the book live (level 0.40 leaves the top 2)
    new = zlib.crc32(b"6025" + b"551" + b"501000")
    feed(_book_msg(2, 1, [["0.55", "1"]], [], new))
    assert sync.state is BookState.LIVE and sync.checksum_failures == 0 and sync.book.last_sequence == 2
    # a checksum computed the default way is a mismatch: the book resyncs, counted by cause
    default_way = crc32_levels([["0.55", "1"], ["0.50", "1.000"]], [["0.60", "3"]], spec)
    feed(_book_msg(3, 2, [], [["0.60", "3"]], default_way))
    assert sync.state is not BookState.LIVE and sync.checksum_failures == 1
    assert sync.stats().resyncs_by_cause.get(ResyncCause.CHECKSUM.value) == 1


# ------------------------------------------------------------------------------------------- chanId per session


class _Event(msgspec.Struct):
    event: str
    chanId: int | None = None
    channel: str = ""
    symbol: str = ""


_event_decoder = msgspec.json.Decoder(_Event)
_data_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_chan_decoder = msgspec.json.Decoder(int)
_te_decoder = msgspec.json.Decoder(tuple[int, int, str, str])


class ChanIdAdapter(MadeUpAdapter):
    """Bitfinex-like: the server answers each subscribe with a numeric ``chanId`` valid on that socket only,
    and data frames are ``[chanId, "te", [id, mts, amount, price]]`` or heartbeats ``[chanId, "hb"]``."""

    exchange = "madeupchan"

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        raise AssertionError("stateful protocol: only session decoders may decode")

    def session_decoder(self) -> FrameDecoder:
        channels: BoundedMap[int, Subscription] = BoundedMap(64)

        def decode(frame: str | bytes, receipt_ns: int) -> list[Decoded]:
            text = frame.encode() if isinstance(frame, str) else frame
            if text.startswith(b"{"):
                ev = decode_json(_event_decoder, text, "madeupchan", "malformed event")
                if ev.event == "subscribed" and ev.chanId is not None:
                    sub = Subscription(Channel.TRADES, ev.symbol.replace("-", "/"))
                    channels.put(ev.chanId, sub)
                    return [Ack("subscribe", None, (sub,))]
                if ev.event == "unsubscribed" and ev.chanId is not None:
                    sub_gone = channels.pop(ev.chanId)
                    return [Ack("unsubscribe", None, (sub_gone,) if sub_gone else ())]
                return []
            item = decode_json(_data_decoder, text, "madeupchan", "malformed data")
            if len(item) not in (2, 3):
                raise DecodeError(f"madeupchan: data frame of {len(item)} items")
            chan_id = decode_json(_chan_decoder, item[0], "madeupchan", "bad chanId")
            known = channels.get(chan_id)
            if known is None:
                raise DecodeError(f"madeupchan: data for chanId {chan_id} not subscribed on this connection")
            sub = known
            if len(item) == 2:
                return [Heartbeat()]
            tid, mts, amount, price = decode_json(_te_decoder, item[2], "madeupchan", "bad trade")
            size = Decimal(amount)
            return [
                Trade(
                    self.exchange,
                    sub.symbol,
                    self.exchange_symbol(sub.symbol),
                    Decimal(price),
                    abs(size),
                    Side.SELL if size < 0 else Side.BUY,
                    str(tid),
                    mts,
                    receipt_ns,
                    tid,
                )
            ]

        return decode


def test_server_assigned_channel_ids_live_and_die_with_their_session() -> None:
    ad = ChanIdAdapter()
    a, b = ad.session_decoder(), ad.session_decoder()
    assert a is not b
    # the server happens to give chanId 17 to BTC on one socket and to ETH on the other
    [ack_a] = a('{"event":"subscribed","channel":"trades","chanId":17,"symbol":"BTC-USD"}', 0)
    [ack_b] = b('{"event":"subscribed","channel":"trades","chanId":17,"symbol":"ETH-USD"}', 0)
    assert isinstance(ack_a, Ack) and ack_a.subscriptions == (Subscription(Channel.TRADES, "BTC/USD"),)
    assert isinstance(ack_b, Ack) and ack_b.subscriptions == (Subscription(Channel.TRADES, "ETH/USD"),)
    frame = '[17,"te",[401597395,1574694478808,"-0.005","7245.3"]]'
    [ta] = a(frame, 1)
    [tb] = b(frame, 2)
    assert isinstance(ta, Trade) and isinstance(tb, Trade)
    assert (ta.symbol, tb.symbol) == ("BTC/USD", "ETH/USD")
    assert ta.side is Side.SELL and str(ta.amount) == "0.005" and ta.sequence == 401597395
    assert a('[17,"hb"]', 3) == [Heartbeat()]
    # a fresh session (a reconnect) knows no ids: data before its subscribe answer is an error, not a guess
    c = ad.session_decoder()
    with pytest.raises(DecodeError, match="chanId 17 not subscribed on this connection"):
        c(frame, 4)
    # unsubscribing frees the id on that session only
    [un] = a('{"event":"unsubscribed","status":"OK","chanId":17}', 5)
    assert isinstance(un, Ack) and un.op == "unsubscribe"
    with pytest.raises(DecodeError):
        a(frame, 6)
    [still] = b(frame, 7)
    assert isinstance(still, Trade) and still.symbol == "ETH/USD"


def test_stateless_adapters_decode_every_session_with_decode() -> None:
    ad = MadeUpAdapter()
    decoder = ad.session_decoder()
    assert decoder('{"ping":3}', 0) == ad.decode('{"ping":3}', 0) == [ReplyRequired('{"pong": 3}')]
    assert decoder == ad.decode


# ------------------------------------------------------------------------------------------- REST before connect


class _Bullet(msgspec.Struct):
    token: str
    endpoint: str


class _BulletAnswer(msgspec.Struct):
    code: str
    data: _Bullet


_bullet_decoder = msgspec.json.Decoder(_BulletAnswer)


class TokenAdapter(MadeUpAdapter):
    """KuCoin-like: a token and the WebSocket endpoint are fetched over REST before each connect."""

    exchange = "madeuptoken"

    def connect_request(self, spec: ConnectionSpec) -> RestRequest | None:
        return RestRequest("/api/v1/bullet-public", {"route": spec.route or "public"}, weight=10)

    def connect_url(self, spec: ConnectionSpec, body: bytes) -> str:
        answer = decode_json(_bullet_decoder, body, "madeuptoken", "malformed bullet answer")
        if answer.code != "200000":
            raise DecodeError(f"madeuptoken: bullet answer code {answer.code}")
        return f"{answer.data.endpoint}?token={answer.data.token}&connectId={len(spec.subscriptions)}"


def test_a_rest_step_before_connecting() -> None:
    plain, token = MadeUpAdapter(), TokenAdapter()
    [spec] = token.plan_connections([Subscription(Channel.TRADES, "BTC/USD")])
    assert plain.connect_request(spec) is None and plain.connect_url(spec, b"") == spec.url
    req = token.connect_request(spec)
    assert req == RestRequest("/api/v1/bullet-public", {"route": "public"}, weight=10)
    body = b'{"code":"200000","data":{"token":"abc123","endpoint":"wss://ws-api.madeup.example/endpoint"}}'
    assert token.connect_url(spec, body) == "wss://ws-api.madeup.example/endpoint?token=abc123&connectId=1"
    for bad in (b'{"code":"400100","data":{"token":"","endpoint":""}}', b"<html>502</html>", b'{"code":"1"}'):
        with pytest.raises(DecodeError):
            token.connect_url(spec, bad)
