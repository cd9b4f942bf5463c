"""Exchange-rule timings and limits the simulator enforces, as plain frozen dataclasses.

Every number here is a protocol fact from the exchange's official documentation (the constant's comment names the
page and section) and can be shortened for tests and demos with :func:`dataclasses.replace`, e.g.
``replace(BINANCE_SPOT_RULES, ping_interval_s=0.05)``. Times are seconds (``*_s``) of the simulator's injected
clock; counts are per connection unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptolink.simulator.market import MarketSource

__all__ = [
    "BINANCE_COINM_RULES",
    "BINANCE_SPOT_RULES",
    "BINANCE_USDM_RULES",
    "OKX_RULES",
    "ExchangeRules",
    "SimConfig",
]


@dataclass(frozen=True, slots=True)
class ExchangeRules:
    """Keepalive, lifetime, inbound-rate and REST-limit rules of one simulated exchange.

    Args:
        ping_interval_s: server WS ping frame period; ``None`` = the server never pings (OKX).
        pong_timeout_s: close when the oldest unanswered server ping is older than this; ``None`` disables.
        lifetime_s: forced close of every connection after this age (Binance 24 h); ``None`` disables.
        idle_close_s: close when no subscription was made and no data was pushed for this long (OKX 30 s);
            ``None`` disables.
        max_in_msgs_per_s: inbound frames (text, ping, pong) per rolling second before close 1008; ``None``
        disables.
        max_subs_per_hour: subscribe/unsubscribe requests per connection per hour (OKX 480); ``None``
        disables.
        max_streams: streams per connection (Binance 1024).
        rest_weight_limit: REST weight per ``rest_window_s`` per IP (Binance REQUEST_WEIGHT).
        rest_window_s: REST limit window (Binance 60 s; OKX 2 s per endpoint).
        ban_s: first 418 ban length after requests continue past a 429 (Binance: 2 min, escalating).
        book_heartbeat_s: OKX empty ``books`` update (``seqId == prevSeqId``) after this much book silence.
        send_queue: frames buffered per connection before it is dropped as a slow consumer.
        max_frame_bytes: largest inbound frame accepted (aiohttp closes with 1009 above it).
    """

    ping_interval_s: float | None = None
    pong_timeout_s: float | None = None
    lifetime_s: float | None = None
    idle_close_s: float | None = None
    max_in_msgs_per_s: int | None = None
    max_subs_per_hour: int | None = None
    max_streams: int = 1024
    rest_weight_limit: int = 6000
    rest_window_s: float = 60.0
    ban_s: float = 120.0
    book_heartbeat_s: float | None = None
    send_queue: int = 10_000
    max_frame_bytes: int = 1 << 20


#: Ping every 20 s, pong within 1 min, 24 h life, 5 incoming msgs/s, 1024 streams: "General WSS information" and
#: "WebSocket Limits" of https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams ;
#: REQUEST_WEIGHT 6000/min: https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits (429 then
#: 418 bans with Retry-After) and the ``rateLimits`` of exchangeInfo.
BINANCE_SPOT_RULES = ExchangeRules(
    ping_interval_s=20.0,
    pong_timeout_s=60.0,
    lifetime_s=24 * 3600.0,
    max_in_msgs_per_s=5,
    rest_weight_limit=6000,
)
#: Ping every 3 min, pong within 10 min, 24 h life, 10 incoming msgs/s, 1024 streams:
#: https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams ;
#: REQUEST_WEIGHT 2400/min: https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
#: ("IP Limits") and the ``rateLimits`` of exchangeInfo.
BINANCE_USDM_RULES = ExchangeRules(
    ping_interval_s=180.0,
    pong_timeout_s=600.0,
    lifetime_s=24 * 3600.0,
    max_in_msgs_per_s=10,
    rest_weight_limit=2400,
)
#: Ping every 3 min, pong within 10 min, 24 h life, 10 incoming msgs/s, 200 streams per connection:
#: https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams/Connect ;
#: REQUEST_WEIGHT 2400/min: https://developers.binance.com/docs/derivatives/coin-margined-futures/general-info
#: ("IP Limits") and the ``rateLimits`` of exchangeInfo.
BINANCE_COINM_RULES = ExchangeRules(
    ping_interval_s=180.0,
    pong_timeout_s=600.0,
    lifetime_s=24 * 3600.0,
    max_in_msgs_per_s=10,
    max_streams=200,
    rest_weight_limit=2400,
)
#: Client text pings, close after 30 s without subscription or data, 480 subscribe/unsubscribe/login requests per
#: hour per connection: https://www.okx.com/docs-v5/en/#overview-websocket-connect ; REST limits are counted per
#: endpoint per 2 s (https://www.okx.com/docs-v5/en/#overview-rate-limits); empty ``books`` update after about
#: 60 s without book changes ("Sequence ID" in
#: https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel).
OKX_RULES = ExchangeRules(
    idle_close_s=30.0,
    max_subs_per_hour=480,
    rest_weight_limit=0,  # per-endpoint limits, see cryptolink.simulator.okx.REST_LIMITS
    rest_window_s=2.0,
    book_heartbeat_s=60.0,
)


def _default_rules() -> dict[str, ExchangeRules]:
    """Every registered exchange's documented rules (:mod:`cryptolink.simulator.registry`)."""
    from cryptolink.simulator import registry  # lazy: the protocol modules import this module

    return {name: spec.rules for name, spec in registry.specs().items()}


def _default_symbols() -> dict[str, tuple[str, ...]]:
    """Every registered exchange's default symbols."""
    from cryptolink.simulator import registry

    return {name: spec.symbols for name, spec in registry.specs().items()}


#: market kinds a ``replay_files`` key may name: Binance spot, USDⓈ-M and COIN-M hftbacktest-format captures
REPLAY_KINDS = ("spot", "usdm", "coinm")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Whole-simulator configuration.

    Args:
        rules: per exchange id (``binance``, ``binanceusdm``, ``binancecoinm``, ``okx``) the rules to enforce; an
            exchange missing here uses its registered default rules.
        symbols: per exchange id the exchange-native symbols served (``BTCUSDT``; OKX ``BTC-USDT``,
            ``UNI-USD-SWAP``, ``BTC-USD-220527``; COIN-M ``BTCUSD_PERP``, ``ETHUSD_PERP``); an exchange missing here
            serves its registered defaults. Anything else is unknown: Binance accepts its streams and sends
            nothing, OKX answers error 60018.
        okx_checksum: ``"real"`` fills the legacy CRC32 ("Checksum" in
            https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel), ``"zero"``
            sends ``0``.
        synthetic_rate_hz: events per second of each synthetic market (book deltas, trades, BBO mixed).
        replay_files: the user's own captures: ``(market kind, neutral symbol) -> path`` of an hftbacktest-format
            file (gzip or plain text: ``<receive ns> <frame>`` per line, Binance combined-stream frames plus an
            optional bare REST depth snapshot), e.g. ``{("spot", "BTCUSDT"): "capture.gz"}``. Kind ``"spot"``
            feeds Binance spot, ``"usdm"`` Binance USDⓈ-M, ``"coinm"`` Binance COIN-M (``BTCUSD_PERP``); entries
            override the shipped recordings in replay mode. The symbol must also be served (``symbols``). OKX
            replays only its own shipped recording.
        rest_limits: per exchange id ``(weight, seconds)``: REST limits scaled down for tests (``--rest-limit
            binance=50/10``). Binance: REQUEST_WEIGHT ``weight`` per ``seconds`` window instead of the documented
            per-minute limit (429 with ``Retry-After``, then 418); OKX applies it to its per-endpoint counts. Exposed
            to protocol modules as ``ExchangeServer.rest_limit_override``.
        capture_sources: per exchange id, ``exchange symbol -> factory`` of the market sources of a user's own
            capture (:meth:`cryptolink.simulator.capture.Capture.sources`, ``cryptolink simulate --replay``);
            those symbols are served (besides ``symbols``) from the capture instead of the shipped recordings.

    Raises:
        FileNotFoundError: a ``replay_files`` path is not an existing file.
        ValueError: a ``replay_files`` key is not ``(kind, symbol)`` with kind ``spot``, ``usdm`` or ``coinm``; a
            ``rest_limits`` entry is not ``(weight >= 1, seconds > 0)``.
    """

    rules: dict[str, ExchangeRules] = field(default_factory=_default_rules)
    symbols: dict[str, tuple[str, ...]] = field(default_factory=_default_symbols)
    okx_checksum: str = "real"
    synthetic_rate_hz: float = 50.0
    replay_files: Mapping[tuple[str, str], str | Path] = field(default_factory=dict)
    rest_limits: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    capture_sources: Mapping[str, Mapping[str, Callable[[], MarketSource]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for exch, limit in self.rest_limits.items():
            if not (
                isinstance(limit, tuple)
                and len(limit) == 2
                and isinstance(limit[0], int)
                and limit[0] >= 1
                and float(limit[1]) > 0
            ):
                raise ValueError(f"rest_limits[{exch!r}] = {limit!r}: expected (weight >= 1, seconds > 0)")
        checked: dict[tuple[str, str], Path] = {}
        for key, raw in self.replay_files.items():
            if not (isinstance(key, tuple) and len(key) == 2 and key[0] in REPLAY_KINDS):
                raise ValueError(
                    f"replay_files key {key!r}: expected (kind, symbol) with kind one of {', '.join(REPLAY_KINDS)}"
                )
            path = Path(raw)
            if not path.is_file():
                raise FileNotFoundError(f"replay_files[{key!r}]: no such file: {path}")
            checked[key] = path
        object.__setattr__(self, "replay_files", checked)
