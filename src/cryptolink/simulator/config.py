"""Exchange-rule timings and limits the simulator enforces, as plain frozen dataclasses.

Every number here is a protocol fact from ``EXCHANGES.md`` (section named per field) and can be shortened
for tests
and demos with :func:`dataclasses.replace`, e.g. ``replace(BINANCE_SPOT_RULES, ping_interval_s=0.05)``.
Times are seconds (``*_s``) of the simulator's injected clock; counts are per connection unless said
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
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


#: EXCHANGES.md §1: ping every 20 s, pong within 60 s, 24 h life, 5 msgs/s, 1024 streams, 6000 weight/min.
BINANCE_SPOT_RULES = ExchangeRules(
    ping_interval_s=20.0,
    pong_timeout_s=60.0,
    lifetime_s=24 * 3600.0,
    max_in_msgs_per_s=5,
    rest_weight_limit=6000,
)
#: EXCHANGES.md §2: ping every 3 min, pong within 10 min, 24 h life, 10 msgs/s, 2400 weight/min.
BINANCE_USDM_RULES = ExchangeRules(
    ping_interval_s=180.0,
    pong_timeout_s=600.0,
    lifetime_s=24 * 3600.0,
    max_in_msgs_per_s=10,
    rest_weight_limit=2400,
)
#: EXCHANGES.md §3: client pings, 30 s idle close, 480 sub/unsub per hour, REST counts per endpoint per 2 s.
OKX_RULES = ExchangeRules(
    idle_close_s=30.0,
    max_subs_per_hour=480,
    rest_weight_limit=0,  # per-endpoint limits, see cryptolink.simulator.okx.REST_LIMITS
    rest_window_s=2.0,
    book_heartbeat_s=60.0,
)


def _default_rules() -> dict[str, ExchangeRules]:
    return {"binance": BINANCE_SPOT_RULES, "binanceusdm": BINANCE_USDM_RULES, "okx": OKX_RULES}


def _default_symbols() -> dict[str, tuple[str, ...]]:
    return {
        "binance": ("BTCUSDT", "ETHUSDT"),
        "binanceusdm": ("BTCUSDT", "ETHUSDT"),
        "okx": ("BTC-USDT", "ETH-USDT", "BTC-USDT-SWAP"),
    }


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Whole-simulator configuration.

    Args:
        rules: per exchange id (``binance``, ``binanceusdm``, ``okx``) the rules to enforce.
        symbols: per exchange id the exchange-native symbols served (``BTCUSDT``; OKX ``BTC-USDT``,
            ``BTC-USDT-SWAP``). Anything else is unknown: Binance accepts its streams and sends nothing
            (EXCHANGES.md §1), OKX answers error 60018 (§3).
        okx_checksum: ``"real"`` fills the legacy CRC32 (EXCHANGES.md §3), ``"zero"`` sends ``0`` as OKX
        does now.
        synthetic_rate_hz: events per second of each synthetic market (book deltas, trades, BBO mixed).
    """

    rules: dict[str, ExchangeRules] = field(default_factory=_default_rules)
    symbols: dict[str, tuple[str, ...]] = field(default_factory=_default_symbols)
    okx_checksum: str = "real"
    synthetic_rate_hz: float = 50.0
