"""Service configuration: which exchanges, markets, symbols and channels to stream, and how to keep them
healthy.

A :class:`CryptolinkConfig` is loaded from YAML (:func:`load_config`,
:meth:`CryptolinkConfig.from_yaml_text`) or built in Python
(``CryptolinkConfig(exchanges={"binance": ExchangeConfig(exchange="binance", symbols=[...])})``).
Every key, its type, default and meaning, and the environment variables, are documented in
``docs/configuration.md``.

Errors: a bad configuration raises one :class:`ConfigError` whose message names every wrong field with its
path (``exchanges.binance.symbols[1]: ...``), one per line. Unknown keys are errors. Secret values
(``api_key``, ``api_secret``) are :class:`pydantic.SecretStr`: they print as ``**********`` in ``repr``,
``str`` and ``model_dump_json`` and never appear in error messages.

Environment: every key can be set by a variable ``CRYPTOLINK__<KEY>``, levels separated by ``__``
(``CRYPTOLINK__STATUS__TOKEN``, ``CRYPTOLINK__LOG_LEVEL``, ``CRYPTOLINK__EXCHANGES__BINANCE_PERP__API_KEY``:
:func:`env_var_name`), read with pydantic-settings and merged over the file (the environment wins) before
validation. Names are case-insensitive; lists and mappings are JSON; ``null`` is ``None`` (refused for a secret
field: the environment cannot unset a secret); empty variables are ignored. An exchange entry is named as its
key upper-cased with every character other than ``A-Z0-9`` replaced by ``_``; a variable for an entry that is
not in the file, or for no key, is an error naming the variable. Errors about a value from the environment name its variable; secret values never appear in them.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError

from cryptolink.bus import OverflowPolicy
from cryptolink.errors import ConfigError
from cryptolink.exchanges import SUPPORTED as _ADAPTERS_SUPPORTED
from cryptolink.exchanges import check_symbol
from cryptolink.models import Channel, Market, Subscription
from cryptolink.symbols import SymbolShape, symbol_shape

__all__ = [
    "ENV_PREFIX",
    "SUPPORTED",
    "ChannelsConfig",
    "ConfigError",
    "CryptolinkConfig",
    "ExchangeConfig",
    "NatsClusterConfig",
    "NatsConfig",
    "NatsStreamConfig",
    "OutputConfig",
    "OverflowPolicy",
    "ReconnectConfig",
    "RestConfig",
    "RestGroupConfig",
    "RestHealthConfig",
    "RestLimitsConfig",
    "RestMemberConfig",
    "RestRetryConfig",
    "StatusConfig",
    "WatchdogConfig",
    "env_var_name",
    "is_loopback",
    "load_config",
    "status_from_env",
]

SUPPORTED: Mapping[str, tuple[Market, ...]] = _ADAPTERS_SUPPORTED
"""Exchange ids cryptolink can stream (ccxt's, and the alias ``binance`` + ``perpetual`` for ``binanceusdm``),
with the markets each supports; derived from the adapters' registrations (:mod:`cryptolink.exchanges`)."""

ENV_PREFIX = "CRYPTOLINK__"
"""Prefix of every environment variable cryptolink reads; ``__`` also separates the levels of a key
(``CRYPTOLINK__STATUS__PORT`` is ``status.port``)."""

_ENV_DELIMITER = "__"
_ENV_NULL = "null"

_SUPPORTED_CONTEXT_KEY = "supported"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MAX_SYMBOLS = 1024


# ------------------------------------------------------------------------------------------------ sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ChannelsConfig(_Section):
    """Which channels to stream for every symbol of an exchange entry.

    YAML accepts a mapping (``{trades: true, ticker: false, book: true}``) or a list of channel names
    (``[trades, book]``: listed ones on, others off). Books are kept at the depth the exchange publishes
    (Binance: REST snapshot of 1000 levels per side stitched with the full diff stream; OKX: the 400-level
    ``books`` channel), so they stay exact; there is no ``depth`` key.

    Attributes:
        trades: public trades.
        ticker: best bid/offer (BBO) ticker.
        book: incremental L2 order book.
    """

    trades: bool = True
    ticker: bool = True
    book: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "depth" in data:
            raise ValueError(
                "'depth' is not supported: books are kept at the depth the exchange publishes "
                "(a trimmed incremental book would not stay exact); remove the key"
            )
        if isinstance(data, list | tuple):
            names = [str(x) for x in data]
            unknown = [n for n in names if n not in {c.value for c in Channel}]
            if unknown:
                raise ValueError(f"unknown channel(s) {unknown}; expected some of trades, ticker, book")
            return {c.value: c.value in names for c in Channel}
        return data

    @model_validator(mode="after")
    def _at_least_one(self) -> ChannelsConfig:
        if not self.enabled_channels():
            raise ValueError("at least one of trades, ticker, book must be enabled")
        return self

    def enabled_channels(self) -> tuple[Channel, ...]:
        """The enabled channels, in the order trades, ticker, book."""
        flags = ((Channel.TRADES, self.trades), (Channel.TICKER, self.ticker), (Channel.BOOK, self.book))
        return tuple(ch for ch, on in flags if on)


class ReconnectConfig(_Section):
    """Reconnect backoff: capped exponential with full jitter (the rule: :mod:`cryptolink.engine.backoff`).

    The first retry after a session that delivered data is immediate; the n-th consecutive failed attempt
    (n >= 1) then waits ``uniform(0, min(max_delay_s, initial_delay_s * multiplier**(n-1)))`` seconds.

    Attributes:
        initial_delay_s: cap of the first delayed retry, seconds (> 0).
        multiplier: growth factor of the cap per attempt (>= 1).
        max_delay_s: largest cap, seconds (>= initial_delay_s); it bounds the wait between the exchange being
            reachable again and the next attempt.
        max_attempts: consecutive failed attempts before the connection is marked failed; ``None`` = never
            give up.
        reset_after_s: a session that has delivered market data and stayed open this long (s) after its
            first data resets the attempt counter (the next reconnect is immediate).
    """

    initial_delay_s: float = Field(default=1.0, gt=0, le=3600)
    multiplier: float = Field(default=2.0, ge=1, le=100)
    max_delay_s: float = Field(default=30.0, gt=0, le=86_400)
    max_attempts: int | None = Field(default=None, ge=1)
    reset_after_s: float = Field(default=2.0, ge=0)

    @model_validator(mode="after")
    def _cap_above_initial(self) -> ReconnectConfig:
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s}) must be >= initial_delay_s ({self.initial_delay_s})"
            )
        return self


class WatchdogConfig(_Section):
    """Data-idle watchdogs (only data frames reset them; pings, pongs and heartbeats never do).

    Attributes:
        first_data_timeout_s: after subscribing, a stream with no data for this long (s) is stale.
        min_idle_s: lower bound of the adaptive per-stream idle timeout, seconds.
        max_idle_s: upper bound of the adaptive per-stream idle timeout, seconds (>= min_idle_s).
    """

    first_data_timeout_s: float = Field(default=10.0, gt=0)
    min_idle_s: float = Field(default=2.5, gt=0)
    max_idle_s: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> WatchdogConfig:
        if self.max_idle_s < self.min_idle_s:
            raise ValueError(f"max_idle_s ({self.max_idle_s}) must be >= min_idle_s ({self.min_idle_s})")
        return self


class OutputConfig(_Section):
    """JSONL output of normalized events and gaps (:class:`cryptolink.sinks.jsonl.JsonlSink`).

    Files are ``<dir>/<entry name>/<channel>.jsonl`` (channels ``trades``, ``ticker``, ``book``, ``gaps``),
    rotated to ``<channel>.<UTC time>.jsonl`` by size (and optionally by time), the oldest rotated files
    deleted beyond the retention limits. Files are written by a thread of their own, never on the event loop.
    The directory is checked at start: an unwritable one refuses to start.

    Attributes:
        enabled: write JSONL files.
        dir: output directory.
        flush_interval_s: buffered lines are handed to the writer at least this often, seconds.
        max_file_bytes: rotate a stream's file before it passes this size, bytes.
        rotate_interval_s: also rotate every this many seconds (``None``: by size only).
        max_files: rotated files kept per stream (``None``: no limit).
        max_total_bytes: bytes of rotated files kept per stream (``None``: no limit).
    """

    enabled: bool = False
    dir: Path = Path("data")
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    rotate_interval_s: float | None = Field(default=None, gt=0)
    max_files: int | None = Field(default=20, ge=0)
    max_total_bytes: int | None = Field(default=None, ge=0)


def _check_url(schemes: tuple[str, ...]) -> Any:
    def check(value: str | None) -> str | None:
        if value is not None and not value.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)}")
        return value

    return AfterValidator(check)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``, brackets allowed); a
    DNS name that merely starts with ``127.`` is not (it may resolve to any address)."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class StatusConfig(_Section):
    """The status service: HTTP API, WebSocket push, dashboard and Prometheus metrics
    (:mod:`cryptolink.status`), and the cross-instance status in Redis.

    Attributes:
        enabled: serve the HTTP API (``cryptolink run --no-status`` turns it off; an explicit ``--status-addr``
            turns it on). Off, the rest of the status service still runs: the snapshots, the periodic connection
            report in the log and the Redis status (with ``redis_url``).
        host / port: listening address; binding anything but loopback requires ``token``. Port 0 picks a free
            port (logged at start).
        token: bearer token every request must carry (``Authorization: Bearer <token>``, or ``?token=``);
            required off loopback, optional on it. At least 16 characters, not only whitespace and without
            leading or trailing whitespace (an empty token would let every request in; HTTP strips the
            whitespace around a header value). Never logged or served. Without a token the API answers only
            requests whose ``Host`` is a loopback name or the bound address, and refuses a WebSocket opened by a
            page of another origin (:mod:`cryptolink.status.app`).
        snapshot_interval_s: how often a statistics snapshot is taken for every view, s. ``/readyz`` answers 503
            when the latest snapshot is older than three intervals.
        push_interval_s: ``/ws/status`` push period, s (a state change pushes at once, at most one such push per
            0.25 s). A client that has not taken one push within ``max(1, 2 * push_interval_s)`` s is closed
            (code 1013) and counted.
        report_interval_s: the connection report is logged this often, s (0: never).
        events_kept: connection events kept for ``/api/events`` (bounded ring).
        per_symbol_metrics: Prometheus series per subscription (data age, stale) and per book (live, resyncs by
            cause, gaps, checksum failures, drops, id restarts); off keeps the labels to exchange, market, feed and
            connection, so the series count does not grow with the symbols (``docs/metrics.md``).
        redis_url: write this instance's snapshot to Redis (``redis://[user:password@]host:port/db``,
            ``rediss://``, ``unix://``) for ``/api/cluster/status`` and ``cryptolink status --redis``; ``None``:
            no Redis. Checked with redis-py's own parser (query parameters included). A secret (it may hold a
            password): never printed.
        instance_id: this instance's name in Redis (default ``<hostname>-<pid>``).
        redis_ttl_s: lifetime of the snapshot in Redis, s; an instance silent for longer shows as unknown. With
            ``redis_url`` at least ``2 * snapshot_interval_s + 2`` (two snapshot periods plus the 2 s Redis
            timeout), or a healthy instance would read as unknown between two writes.
        redis_prefix: key prefix in Redis.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8766, ge=0, le=65535)
    token: SecretStr | None = None
    snapshot_interval_s: float = Field(default=1.0, gt=0, le=60)
    push_interval_s: float = Field(default=5.0, gt=0, le=3600)
    report_interval_s: float = Field(default=600.0, ge=0)
    events_kept: int = Field(default=1000, ge=1, le=1_000_000)
    per_symbol_metrics: bool = False
    redis_url: SecretStr | None = None
    instance_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    redis_ttl_s: float = Field(default=15.0, ge=1, le=86_400)
    redis_prefix: str = Field(default="cryptolink", min_length=1, max_length=64)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # the messages never quote the value (config.py shows them as they are: ``_OWN_MESSAGES``)
        if value is None:
            return value
        token = value.get_secret_value()
        shortest = 16
        if not token.strip():
            raise ValueError("must not be empty or only whitespace (it would let every request in)")
        if token != token.strip():
            raise ValueError(
                "must not start or end with whitespace (HTTP strips it from the Authorization header)"
            )
        if len(token) < shortest:
            raise ValueError(f"must be at least {shortest} characters long (a short token can be guessed)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        url = value.get_secret_value()
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        try:
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0..65535
        except ValueError:
            raise ValueError("the port is not a number in 0..65535") from None
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host")
        problem = cls._redis_url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> StatusConfig:
        if self.enabled and not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"status.host {self.host!r} is not loopback: set status.token (or CRYPTOLINK__STATUS__TOKEN) "
                "so that every request must carry it"
            )
        return self

    @model_validator(mode="after")
    def _redis_ttl_covers_two_writes(self) -> StatusConfig:
        redis_timeout_s = 2.0  # the status publisher's timeout (cryptolink.status.cluster.REDIS_TIMEOUT_S)
        least = 2 * self.snapshot_interval_s + redis_timeout_s
        if self.redis_url is not None and self.redis_ttl_s < least:
            raise ValueError(
                f"status.redis_ttl_s {self.redis_ttl_s:g} is below 2 * snapshot_interval_s + {redis_timeout_s:g} "
                f"= {least:g} s: the snapshot written to Redis would expire before the next write lands, so a "
                "healthy instance would read as unknown between two writes"
            )
        return self

    @staticmethod
    def _redis_url_problem(url: str) -> str | None:
        """Why redis-py cannot use ``url`` (``None``: it can). Builds (never connects) the connection
        redis-py would open, so a query parameter it does not know or cannot read is refused here rather than
        at start. The message names the parameter, never its value or the password."""
        from urllib.parse import parse_qsl

        from redis.asyncio.connection import ConnectionPool  # here: --help does not import redis

        try:
            ConnectionPool.from_url(url).make_connection()  # type: ignore[no-untyped-call]
        except TypeError as exc:  # "__init__() got an unexpected keyword argument 'x'"
            name = str(exc).rpartition(" ")[2]
            return f"redis-py does not know the query parameter {name}"
        except Exception as exc:  # ValueError: "Invalid value for 'socket_timeout' in connection URL." ...
            text = str(exc)
            secrets = [s for s in (urlsplit(url).password, urlsplit(url).username) if s]
            secrets += [v for _, v in parse_qsl(urlsplit(url).query) if v]
            if any(s in text for s in secrets):
                return f"redis-py cannot use it ({type(exc).__name__})"
            return f"redis-py cannot use it: {text}"
        return None


# -------------------------------------------------------------------------------------------- exchange entry


def _check_symbol(value: str, info: ValidationInfo) -> str:
    market = info.data.get("market")
    exchange = info.data.get("exchange")
    if market is None:  # the market itself is wrong (reported there): accept any unified shape
        if symbol_shape(value) is None:
            raise ValueError(
                f"{value!r} is not a unified symbol; expected BASE/QUOTE, BASE/QUOTE:QUOTE or BASE/QUOTE:BASE"
            )
        return value
    if isinstance(exchange, str) and (exchange, market) in _registered_pairs():
        check_symbol(exchange, market, value)  # the shapes the exchange's registration accepts
        return value
    # an exchange known only to a ``supported`` mapping given to the loader: the market decides the shape
    shape = symbol_shape(value)
    if market == Market.PERPETUAL:
        if shape not in (SymbolShape.LINEAR, SymbolShape.INVERSE):
            raise ValueError(
                f"{value!r} is not a unified perpetual symbol; "
                "expected BASE/QUOTE:QUOTE (e.g. 'BTC/USDT:USDT') or BASE/QUOTE:BASE (e.g. 'BTC/USD:BTC')"
            )
    elif shape is not SymbolShape.SPOT:
        raise ValueError(f"{value!r} is not a unified spot symbol; expected BASE/QUOTE, e.g. 'BTC/USDT'")
    return value


def _registered_pairs() -> set[tuple[str, Market]]:
    return {(ex, m) for ex, markets in SUPPORTED.items() for m in markets}


class ExchangeConfig(_Section):
    """One feed: an exchange, a market type and the symbols and channels to stream from it.

    Attributes:
        exchange: exchange id, one of :data:`SUPPORTED` (or the ``supported`` mapping given to the loader);
            in YAML it defaults to the entry's key.
        enabled: ``False`` keeps the entry but does not connect.
        market: ``spot`` or ``perpetual`` (linear and inverse swaps); default ``spot``, or the only market of
            an exchange id that has one (``binanceusdm``, ``binancecoinm``: ``perpetual``).
        symbols: unified ccxt symbols, ``BASE/QUOTE`` for spot, ``BASE/QUOTE:QUOTE`` for a linear perpetual,
            ``BASE/QUOTE:BASE`` for an inverse one (``BTC/USD:BTC``), as the exchange's registration accepts;
            1..1024, no duplicates.
        channels: channels per symbol.
        testnet: use the exchange's test/demo endpoints (OKX demo ``wss://wspap.okx.com:8443``, Binance spot
            ``stream.testnet.binance.vision``: docs/protocols/).
        api_key, api_secret: credentials (public market data needs none); overridden by environment variables.
        ws_url: WebSocket base address override (``ws://`` or ``wss://``), e.g. the local simulator.
        rest_url: REST base address override (``http://`` or ``https://``).
        reconnect: backoff settings.
        watchdog: data-idle watchdog settings.
        rotation_lead_s: a connection with a forced lifetime (Binance 24 h, docs/protocols/binance.md
            "Limits") is replaced this many seconds before it would be cut (make before break).
    """

    exchange: str
    enabled: bool = True
    market: Market = Market.SPOT
    symbols: Annotated[
        list[Annotated[str, AfterValidator(_check_symbol)]], Field(min_length=1, max_length=_MAX_SYMBOLS)
    ]
    channels: ChannelsConfig = ChannelsConfig()
    testnet: bool = False
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    ws_url: Annotated[str | None, _check_url(("ws", "wss"))] = None
    rest_url: Annotated[str | None, _check_url(("http", "https"))] = None
    reconnect: ReconnectConfig = ReconnectConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    rotation_lead_s: float = Field(default=600.0, ge=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _single_market_default(cls, data: Any, info: ValidationInfo) -> Any:
        """An exchange id with one market (``binanceusdm``, ``binancecoinm``) needs no ``market`` key."""
        if isinstance(data, Mapping) and "market" not in data:
            markets = _supported_from(info).get(str(data.get("exchange")))
            if markets is not None and len(markets) == 1:
                return {**data, "market": markets[0]}
        return data

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str, info: ValidationInfo) -> str:
        supported = _supported_from(info)
        if value not in supported:
            raise ValueError(f"unsupported exchange {value!r}; supported: {', '.join(sorted(supported))}")
        return value

    @field_validator("market")
    @classmethod
    def _known_market(cls, value: Market, info: ValidationInfo) -> Market:
        exchange = info.data.get("exchange")
        supported = _supported_from(info)
        if isinstance(exchange, str) and exchange in supported and value not in supported[exchange]:
            raise ValueError(f"{exchange} does not support market {value.value!r}")
        return value

    @field_validator("symbols")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        dups: set[str] = set()
        for sym in value:
            (dups if sym in seen else seen).add(sym)
        if dups:
            raise ValueError(f"duplicate symbols {sorted(dups)}")
        return value

    def subscriptions(self) -> list[Subscription]:
        """Every (channel, symbol) stream of this entry, channels in the order trades, ticker, book."""
        return [
            Subscription(channel=ch, symbol=sym)
            for sym in self.symbols
            for ch in self.channels.enabled_channels()
        ]


def _supported_from(info: ValidationInfo) -> Mapping[str, tuple[Market, ...]]:
    ctx = info.context
    if isinstance(ctx, Mapping) and _SUPPORTED_CONTEXT_KEY in ctx:
        supported: Mapping[str, tuple[Market, ...]] = ctx[_SUPPORTED_CONTEXT_KEY]
        return supported
    return SUPPORTED


# ------------------------------------------------------------------------------------------------ REST

_STRATEGY_NAMES = ("round_robin", "least_latency", "weighted", "failover")
_CCXT_ID_RE = re.compile(r"^[a-z][a-z0-9]{1,31}$")


class RestLimitsConfig(_Section):
    """The exact REST rate budgets (``docs/rest-limits.md``, ``docs/ratelimit.md``), shared by the REST manager's
    members and the WebSocket engine's book snapshots and trade backfills.

    Attributes:
        redis_url: share the budgets with every process using the same Redis and ``prefix``; ``None`` keeps them
            in this process. A secret (it may hold a password).
        prefix: Redis key prefix of the shared windows.
        fallback_share: fraction of each limit this process uses alone while Redis is unreachable (0 < x <= 1;
            0.25 for four processes).
        window_margin_s: added to every documented window, s (0..10): covers the jitter between a grant and the
            request's arrival at the exchange, which counts its own fixed windows.
        share: fraction of each documented limit this deployment uses in total (0 < x <= 1).
        background_share: fraction of the budget trade backfills may fill, so book snapshots keep room.
        overrides: exchange (ccxt id) -> pool key -> ``[limit, window_s]``, replacing the documented values
            (a simulator scaled with ``--rest-limit``, a VIP tier).
    """

    redis_url: SecretStr | None = None
    prefix: str = Field(default="cryptolink:rl", min_length=1, max_length=64)
    fallback_share: float = Field(default=0.25, gt=0, le=1)
    window_margin_s: float = Field(default=0.25, ge=0, le=10)
    share: float = Field(default=1.0, gt=0, le=1)
    background_share: float = Field(default=0.5, gt=0, le=1)
    overrides: dict[str, dict[str, tuple[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0)]]]] = {}

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = StatusConfig._redis_url_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("overrides")
    @classmethod
    def _known_pools(
        cls, value: dict[str, dict[str, tuple[int, float]]]
    ) -> dict[str, dict[str, tuple[int, float]]]:
        if not value:  # the default: no import (the CLI's start-up stays light)
            return value
        # imported here: cryptolink.rest imports this module
        from cryptolink.rest.costs import known_exchanges, rules_for

        problems = []
        for exchange, pools in value.items():
            if exchange not in known_exchanges():
                problems.append(
                    f"{exchange!r}: no documented rate limits (known: {', '.join(known_exchanges())})"
                )
                continue
            keys = [p.key for p in rules_for(exchange).pools]
            unknown = sorted(set(pools) - set(keys))
            if unknown:
                problems.append(f"{exchange}: unknown pools {unknown} (its pools: {', '.join(keys)})")
        if problems:
            raise ValueError("; ".join(problems))
        return value


class RestHealthConfig(_Section):
    """Health checks of REST members (``docs/rest-balancing.md``).

    Attributes:
        interval_s: time between checks of one member, s (``fetch_time``, or ``fetch_status`` where the
            exchange has no time call).
        timeout_s: a check without an answer in this time failed, s.
        degraded_latency_ms: smoothed latency above which a member is ``degraded``, ms.
        degraded_error_rate: error rate over the last outcomes above which a member is ``degraded`` (0..1).
        offline_after_failures: consecutive failures (calls or checks) that make a member ``offline``.
        recovery_s: a member back from ``offline`` regains its full weight gradually over this time, s.
        check_at_start: check every member as soon as the manager starts (else the first check comes after
            ``interval_s``).
    """

    interval_s: float = Field(default=30.0, gt=0, le=3600)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    degraded_latency_ms: float = Field(default=1000.0, gt=0)
    degraded_error_rate: float = Field(default=0.2, gt=0, le=1)
    offline_after_failures: int = Field(default=3, ge=1, le=1000)
    recovery_s: float = Field(default=30.0, ge=0, le=3600)
    check_at_start: bool = True


class RestRetryConfig(_Section):
    """Retries of one call on other members of its group.

    Attributes:
        max_attempts: members tried at most per call (the first try included), 1..20.
        backoff_initial_s: pause before the second try, s; doubled per try up to ``backoff_max_s``, with
            full jitter.
        backoff_max_s: longest pause between tries, s.
    """

    max_attempts: int = Field(default=3, ge=1, le=20)
    backoff_initial_s: float = Field(default=0.05, ge=0, le=60)
    backoff_max_s: float = Field(default=1.0, ge=0, le=300)


class RestMemberConfig(_Section):
    """One pooled ccxt instance.

    Attributes:
        exchange: ccxt id (``binance``, ``binanceusdm``, ``okx``...).
        hosts: URL prefix replacements applied to the instance's ``urls`` (``{"https://api.binance.com":
            "https://api1.binance.com"}`` for another documented host, or a simulator's address).
        api_key, api_secret, password: credentials (secrets; never logged or reported).
        weight: share of traffic under the ``weighted`` strategy (1..1000).
        priority: order under the ``failover`` strategy (lower first).
        ip: the rate-limit scope: members of one exchange with the same ``ip`` share its budgets (members on
            the same machine and address keep the default).
        options: ccxt ``options`` of the instance.
        timeout_s: timeout of one HTTP request, s.
        max_concurrent: requests of this member in flight at once (at most 100: ccxt's HTTP session opens 100
            connections; a request granted beyond them would wait inside aiohttp after its grant, longer than
            the budget's window margin covers).
    """

    exchange: str
    hosts: dict[str, Annotated[str, _check_url(("http", "https", "ws", "wss"))]] = {}
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    password: SecretStr | None = None
    weight: int = Field(default=1, ge=1, le=1000)
    priority: int = Field(default=0, ge=-1000, le=1000)
    ip: str = Field(default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    options: dict[str, Any] = {}
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_concurrent: int = Field(default=64, ge=1, le=100)

    @field_validator("exchange")
    @classmethod
    def _ccxt_id(cls, value: str) -> str:
        if not _CCXT_ID_RE.match(value):
            raise ValueError(f"{value!r} is not a ccxt exchange id (lower-case letters and digits)")
        return value


class RestGroupConfig(_Section):
    """Members that can serve the same calls, and how to choose among them.

    Attributes:
        members: member names (at least one, no duplicates).
        strategy: ``round_robin``, ``least_latency``, ``weighted`` (smooth weighted round robin) or ``failover``
            (priority order).
    """

    members: Annotated[list[str], Field(min_length=1)]
    strategy: Literal["round_robin", "least_latency", "weighted", "failover"] = "round_robin"

    @field_validator("members")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        dups = sorted({m for m in value if value.count(m) > 1})
        if dups:
            raise ValueError(f"duplicate members {dups}")
        return value


class RestConfig(_Section):
    """The REST manager (``cryptolink.rest.RestManager``, ``docs/rest.md``).

    Attributes:
        members: pooled ccxt instances by name (``[A-Za-z0-9][A-Za-z0-9_-]*``).
        groups: groups by name; a group's members must be defined in ``members``.
        limits: the rate budgets (also used by the WebSocket engine's snapshots and backfills).
        health: health checks.
        retry: retries on other members.
    """

    members: dict[str, RestMemberConfig] = {}
    groups: dict[str, RestGroupConfig] = {}
    limits: RestLimitsConfig = RestLimitsConfig()
    health: RestHealthConfig = RestHealthConfig()
    retry: RestRetryConfig = RestRetryConfig()

    @model_validator(mode="after")
    def _groups_name_members(self) -> RestConfig:
        problems = _rest_cross_problems(self.model_dump(include={"members", "groups"}))
        if problems:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in problems))
        return self

    @classmethod
    def from_yaml_text(cls, text: str, *, source: str | None = None) -> RestConfig:
        """The ``rest:`` section of a YAML configuration (other sections are not read).

        Raises:
            ConfigError: YAML syntax, no ``rest`` mapping, or every wrong field of the section.
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([("", f"YAML syntax error: {exc}")], source) from None
        section = data.get("rest") if isinstance(data, Mapping) else None
        if not isinstance(section, Mapping):
            raise ConfigError([("rest", "the configuration has no 'rest' mapping")], source)
        problems = [(f"rest.{path}", msg) for path, msg in _rest_cross_problems(section)]
        try:
            return cls.model_validate(section)
        except ValidationError as exc:
            for path, msg in _problems(exc):
                problem = (f"rest.{path}" if path else "rest", msg)
                if not any(msg.endswith(m) for _, m in problems) and problem not in problems:
                    problems.append(problem)
            raise ConfigError(problems, source) from None


_NATS_NAME = r"^[A-Za-z0-9_-]+$"
_NATS_TOKEN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


class NatsStreamConfig(_Section):
    """The JetStream stream the NATS sink publishes into (https://docs.nats.io/nats-concepts/jetstream/streams).

    Attributes:
        name: stream name (letters, digits, ``_``, ``-``).
        subjects: the stream's subjects; none: ``<subject_root>.>`` (every subject the sink publishes).
        retention: ``limits`` (keep until a limit), ``interest`` or ``workqueue``.
        storage: ``file`` or ``memory``.
        replicas: copies kept in a NATS cluster (1..5; at most the cluster's size).
        max_age_s: oldest message kept, seconds (0: no age limit).
        max_bytes: stream size bound, bytes (``None``: no size limit).
        max_msgs: message count bound (``None``: no count limit).
        max_msg_size: largest message accepted, bytes (a book snapshot of 5000 levels is about 200 KB).
        duplicate_window_s: how long JetStream remembers a ``Nats-Msg-Id`` to drop a second copy, seconds; must
            cover the longest time between two collectors publishing the same event.
        discard: when a limit is reached, drop the ``old`` messages (default) or refuse ``new`` ones.
    """

    name: str = Field(default="CRYPTOLINK", min_length=1, max_length=64, pattern=_NATS_NAME)
    subjects: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = None
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    storage: Literal["file", "memory"] = "file"
    replicas: int = Field(default=1, ge=1, le=5)
    max_age_s: float = Field(default=86_400.0, ge=0)
    max_bytes: int | None = Field(default=1024**3, ge=1)
    max_msgs: int | None = Field(default=None, ge=1)
    max_msg_size: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    duplicate_window_s: float = Field(default=120.0, gt=0, le=86_400)
    discard: Literal["old", "new"] = "old"


class NatsClusterConfig(_Section):
    """Scale-out: workers share the config's subscriptions through NATS KV leases (docs/cluster.md).

    Attributes:
        enabled: this process is a worker: it runs only the shards whose leases it holds.
        worker_id: this worker's id (unique in the cluster); none: ``<hostname>-<pid>``.
        bucket: the KV bucket holding leases and worker heartbeats.
        kv_replicas: replicas of the bucket in a NATS cluster (1..5).
        lease_ttl_s: a lease not renewed for this long expires (seconds, 2..3600).
        renew_interval_s: how often leases are renewed; none: a third of ``lease_ttl_s``.
        redundancy: workers running each shard at once (1..5; 2 gives zero-gap failover).
        shard_symbols: symbols per shard; none: one shard per connection's worth of symbols (the
            exchange's per-connection stream limit).
        handover_timeout_s: a worker giving a shard away (rebalancing) keeps running it until the new holder
            has it, at most this long (make-before-break).
    """

    enabled: bool = False
    worker_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_NATS_NAME)
    bucket: str = Field(default="cryptolink_leases", min_length=1, max_length=64, pattern=_NATS_NAME)
    kv_replicas: int = Field(default=1, ge=1, le=5)
    lease_ttl_s: float = Field(default=10.0, ge=2, le=3600)
    renew_interval_s: float | None = Field(default=None, gt=0)
    redundancy: int = Field(default=1, ge=1, le=5)
    shard_symbols: int | None = Field(default=None, ge=1, le=10_000)
    handover_timeout_s: float = Field(default=10.0, ge=0, le=600)

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> NatsClusterConfig:
        if self.renew_interval_s is not None and self.renew_interval_s >= self.lease_ttl_s / 2:
            raise ValueError(
                f"renew_interval_s ({self.renew_interval_s:g}) must be below half of lease_ttl_s "
                f"({self.lease_ttl_s:g}), or a single late renewal loses the lease"
            )
        return self

    @property
    def renew_every_s(self) -> float:
        """The renewal interval in effect, seconds."""
        return self.renew_interval_s if self.renew_interval_s is not None else self.lease_ttl_s / 3


class NatsConfig(_Section):
    """Publishing every normalized event to NATS JetStream (docs/nats.md), and scale-out (``cluster``).

    Attributes:
        servers: NATS URLs (``nats://``, ``tls://``); several: nats-py fails over between them.
        user / password / token: credentials (secrets: never logged or reported).
        creds_file: a NATS ``.creds`` file (JWT and NKey seed).
        subject_root: first token(s) of every subject (``cryptolink``).
        channels: channels published (``trades``, ``ticker``, ``book``, ``gaps``).
        streams: at start, ``create`` the stream when missing (an existing one must match, else refused),
            ``check`` that it exists and matches, or ``off`` (publish only).
        stream: the stream's settings.
        max_pending_acks: publishes awaiting their acknowledgement at once (the window), 1..100_000.
        buffer_max_events: events held while the window is full or NATS is unreachable; beyond it events are
            counted as lost (1..10_000_000).
        ack_timeout_s: a publish not acknowledged in this time is sent again with the same id (seconds).
        max_attempts: sends of one event before it is counted as lost (1..1000).
        snapshot_interval_s: publish a snapshot of every live book this often (seconds; 0: only after a
            (re)sync).
        connect_timeout_s: time allowed for each connection attempt (seconds).
        reconnect_wait_s: wait between reconnection attempts to one server (seconds).
        require_at_start: refuse to start when no server answers at start (otherwise keep trying, buffering).
        cluster: scale-out over workers (leases).
    """

    servers: Annotated[
        list[Annotated[str, _check_url(("nats", "tls", "ws", "wss"))]], Field(min_length=1, max_length=64)
    ] = ["nats://127.0.0.1:4222"]
    user: SecretStr | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = None
    subject_root: str = Field(default="cryptolink", min_length=1, max_length=64, pattern=_NATS_TOKEN)
    channels: list[Literal["trades", "ticker", "book", "gaps"]] = ["trades", "ticker", "book", "gaps"]
    streams: Literal["create", "check", "off"] = "create"
    stream: NatsStreamConfig = NatsStreamConfig()
    max_pending_acks: int = Field(default=1000, ge=1, le=100_000)
    buffer_max_events: int = Field(default=100_000, ge=1, le=10_000_000)
    ack_timeout_s: float = Field(default=5.0, gt=0, le=300)
    max_attempts: int = Field(default=10, ge=1, le=1000)
    snapshot_interval_s: float = Field(default=60.0, ge=0, le=86_400)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    reconnect_wait_s: float = Field(default=1.0, gt=0, le=300)
    require_at_start: bool = True
    cluster: NatsClusterConfig = NatsClusterConfig()

    @model_validator(mode="after")
    def _retries_within_the_duplicate_window(self) -> NatsConfig:
        span = self.ack_timeout_s * self.max_attempts
        if span >= self.stream.duplicate_window_s:
            raise ValueError(
                f"ack_timeout_s x max_attempts ({span:g} s) must be below stream.duplicate_window_s "
                f"({self.stream.duplicate_window_s:g} s): a re-send after the window is no longer recognized as "
                "a copy and the stream would hold the event twice"
            )
        return self

    @model_validator(mode="after")
    def _credentials(self) -> NatsConfig:
        if self.token is not None and (self.user is not None or self.password is not None):
            raise ValueError("give either token or user and password, not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        return self

    @property
    def stream_subjects(self) -> list[str]:
        """The stream's subjects in effect."""
        return list(self.stream.subjects) if self.stream.subjects else [f"{self.subject_root}.>"]


def _rest_cross_problems(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Names and group membership of a raw ``rest`` mapping, as ``(path within rest, message)``: found on the
    raw data so that they are reported with every field error at once."""
    out: list[tuple[str, str]] = []
    members = section.get("members")
    groups = section.get("groups")
    members = members if isinstance(members, Mapping) else {}
    groups = groups if isinstance(groups, Mapping) else {}
    for kind, table in (("members", members), ("groups", groups)):
        for name in table:
            if not isinstance(name, str) or not _NAME_RE.match(name):
                out.append((kind, f"invalid name {name!r}; use letters, digits, '_' and '-' (max 64 chars)"))
    for name in sorted(set(members) & set(groups), key=str):
        out.append(("groups", f"{name!r} is both a member and a group"))
    for gname, group in groups.items():
        listed = group.get("members") if isinstance(group, Mapping) else None
        if isinstance(listed, list):
            unknown = [m for m in listed if not isinstance(m, str) or m not in members]
            if unknown:
                out.append((f"groups.{gname}.members", f"unknown members {unknown}"))
    return out


# ------------------------------------------------------------------------------------------------ top level


class CryptolinkConfig(_Section):
    """The whole configuration.

    Attributes:
        exchanges: feeds keyed by a user-chosen name (``[A-Za-z0-9][A-Za-z0-9_-]*``, at most 64 chars); at
            least one.
        output: JSONL output.
        status: the status service (API, push, dashboard, metrics, Redis status).
        rest: the REST manager and the rate budgets it shares with the engine.
        nats: publish every event to NATS JetStream, and scale out over workers (``None``: no NATS).
        consumer_queue_size: default bound of each consumer's queue, events (1..10_000_000).
        overflow_policy: default overflow policy of consumer queues.
        log_level: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` (case-insensitive).
        event_log_size: connection events kept per connection (bounded ring), 1..100_000.
        verify_symbols: at start, load each exchange's instrument list and refuse symbols it does not list.
    """

    exchanges: Annotated[dict[str, ExchangeConfig], Field(min_length=1)]
    output: OutputConfig = OutputConfig()
    status: StatusConfig = StatusConfig()
    rest: RestConfig = RestConfig()
    nats: NatsConfig | None = None
    consumer_queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    overflow_policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    event_log_size: int = Field(default=100, ge=1, le=100_000)
    verify_symbols: bool = True

    @model_validator(mode="before")
    @classmethod
    def _exchange_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            exchanges = data.get("exchanges")
            if isinstance(exchanges, Mapping):
                fixed: dict[Any, Any] = {}
                for name, entry in exchanges.items():
                    if isinstance(entry, Mapping) and "exchange" not in entry:
                        entry = {"exchange": name, **entry}
                    fixed[name] = entry
                data = {**data, "exchanges": fixed}
        return data

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("exchanges")
    @classmethod
    def _names(cls, value: dict[str, ExchangeConfig]) -> dict[str, ExchangeConfig]:
        problems = _name_problems(list(value))
        if problems:
            raise ValueError(problems[0])  # from_dict reports all of them (_cross_field_problems)
        if not any(e.enabled for e in value.values()):
            raise ValueError(_ALL_DISABLED)
        return value

    # -------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        env: Mapping[str, str] | None = None,
        supported: Mapping[str, tuple[Market, ...]] | None = None,
        source: str | None = None,
    ) -> CryptolinkConfig:
        """Validate a plain mapping (as parsed from YAML), applying environment overrides first.

        Args:
            data: the configuration mapping.
            env: the environment whose ``CRYPTOLINK__...`` variables override the mapping (see the module
                docstring); ``None`` means :data:`os.environ`. Pass ``{}`` to ignore the environment.
            supported: exchange id -> supported markets; ``None`` means :data:`SUPPORTED`.
            source: where the data came from, for error messages.

        Raises:
            ConfigError: listing every wrong field.
        """
        if not isinstance(data, Mapping):
            kind = "empty" if data is None else f"a {type(data).__name__}"
            raise ConfigError([("", f"the configuration must be a mapping at top level, got {kind}")], source)
        overrides = _apply_env(data, os.environ if env is None else env)
        data = overrides.data
        context = {_SUPPORTED_CONTEXT_KEY: SUPPORTED if supported is None else supported}
        problems = overrides.problems + _cross_field_problems(data)
        try:
            config = cls.model_validate(data, context=context)
        except ValidationError as exc:
            for problem in _problems(exc):
                if problem not in problems:
                    problems.append(problem)
            raise ConfigError(overrides.attribute(problems), source) from None
        if problems:
            raise ConfigError(overrides.attribute(problems), source)
        return config

    @classmethod
    def from_yaml_text(
        cls,
        text: str,
        *,
        env: Mapping[str, str] | None = None,
        supported: Mapping[str, tuple[Market, ...]] | None = None,
        source: str | None = None,
    ) -> CryptolinkConfig:
        """Parse and validate YAML text. Same arguments and errors as :meth:`from_dict`.

        Raises:
            ConfigError: the YAML does not parse (with line and column) or the configuration is invalid.
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([("", f"YAML syntax error: {where}{problem}")], source) from None
        return cls.from_dict(data, env=env, supported=supported, source=source)

    def enabled_exchanges(self) -> dict[str, ExchangeConfig]:
        """The entries with ``enabled: true``, by name."""
        return {name: ex for name, ex in self.exchanges.items() if ex.enabled}


def status_from_env(env: Mapping[str, str] | None = None) -> StatusConfig:
    """The ``status`` section built from the environment's ``CRYPTOLINK__STATUS__...`` variables alone (what
    ``cryptolink demo`` uses: it has no configuration file). Other variables are ignored.

    Raises:
        ConfigError: naming every wrong variable or field (never a value).
    """
    env = os.environ if env is None else env
    prefix = f"{ENV_PREFIX}STATUS{_ENV_DELIMITER}"
    overrides = _apply_env({}, {k: v for k, v in env.items() if k.upper().startswith(prefix)})
    problems = list(overrides.problems)
    section = overrides.data.get("status", {})
    try:
        status = StatusConfig.model_validate(section)
    except ValidationError as exc:
        problems += [(f"status.{path}" if path else "status", msg) for path, msg in _problems(exc)]
        raise ConfigError(overrides.attribute(problems), "environment") from None
    if problems:
        raise ConfigError(overrides.attribute(problems), "environment")
    return status


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    supported: Mapping[str, tuple[Market, ...]] | None = None,
) -> CryptolinkConfig:
    """Load a YAML configuration file (UTF-8).

    Raises:
        ConfigError: the file cannot be read, is not valid YAML, or the configuration is invalid.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"cannot read configuration file: {exc}")], source) from None
    return CryptolinkConfig.from_yaml_text(text, env=env, supported=supported, source=source)


def env_var_name(entry_name: str, key: str = "") -> str:
    """Environment variable of a key of an exchange entry:
    ``env_var_name("binance-perp", "api_key")`` -> ``CRYPTOLINK__EXCHANGES__BINANCE_PERP__API_KEY``.

    The entry's name is upper-cased with every character other than ``A-Z0-9`` replaced by ``_``; a nested key
    is dotted (``"reconnect.max_attempts"``). Without ``key``: the prefix shared by the entry's variables
    (``CRYPTOLINK__EXCHANGES__BINANCE_PERP``).
    """
    token = re.sub(r"[^A-Z0-9]", "_", entry_name.upper())
    base = f"{ENV_PREFIX}EXCHANGES{_ENV_DELIMITER}{token}"
    return f"{base}{_ENV_DELIMITER}{_ENV_DELIMITER.join(key.upper().split('.'))}" if key else base


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading the given variables instead of :data:`os.environ`:
    names are case-insensitive, ``__`` separates nesting levels, lists and mappings are JSON."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str], prefix: str) -> None:
        super().__init__(
            settings_cls, case_sensitive=False, env_prefix=prefix, env_nested_delimiter=_ENV_DELIMITER
        )
        self.env_vars = {k.lower(): v for k, v in env.items()}


def _settings_shape(
    model: type[BaseModel], name: str, skip: frozenset[str] = frozenset()
) -> type[BaseSettings]:
    """A settings class with ``model``'s fields, all optional: it tells the environment source which names
    exist and which values are lists or mappings. Never instantiated (the real model validates)."""
    fields: dict[str, Any] = {k: (f.annotation, None) for k, f in model.model_fields.items() if k not in skip}
    shape: type[BaseSettings] = create_model(name, __base__=BaseSettings, **fields)
    return shape


@functools.cache
def _env_shapes() -> tuple[type[BaseSettings], type[BaseSettings]]:
    """(the top level without ``exchanges``, one exchange entry), built once."""
    return (
        _settings_shape(CryptolinkConfig, "_EnvTopLevel", frozenset({"exchanges"})),
        _settings_shape(ExchangeConfig, "_EnvExchangeEntry"),
    )


@dataclass(frozen=True, slots=True)
class _EnvOverrides:
    """What the environment did to a configuration mapping.

    Attributes:
        data: the mapping with the environment's values merged in.
        problems: variables that could not be applied, as ``(variable, message)``; never a value.
        origins: configuration path (``status.port``, ``exchanges.okx-perp.api_key``) -> the variable that set
            it.
    """

    data: Mapping[str, Any]
    problems: list[tuple[str, str]]
    origins: dict[str, str]

    def attribute(self, problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``problems`` with the variable named on each one about a value that came from the environment."""
        out: list[tuple[str, str]] = []
        for path, msg in problems:
            keys = [k for k in self.origins if path == k or path.startswith((f"{k}.", f"{k}["))]
            var = self.origins[max(keys, key=len)] if keys else None
            out.append((path, f"{msg} (from environment variable {var})" if var else msg))
        return out


def _apply_env(data: Mapping[str, Any], env: Mapping[str, str]) -> _EnvOverrides:
    """Read the ``CRYPTOLINK__...`` variables of ``env`` with pydantic-settings and deep-merge them over
    ``data`` (the environment wins). The rule is in ``docs/configuration.md`` ("Environment variables")."""
    ours = {k: v for k, v in env.items() if k.upper().startswith(ENV_PREFIX) and v != ""}
    if not ours:
        return _EnvOverrides(data, [], {})
    top_shape, entry_shape = _env_shapes()
    exchanges = data.get("exchanges")
    entries = [n for n in exchanges if isinstance(n, str)] if isinstance(exchanges, Mapping) else []
    entry_vars = f"{ENV_PREFIX}EXCHANGES"
    problems: list[tuple[str, str]] = []
    origins: dict[str, str] = {}
    merged: Mapping[str, Any] = data
    where: tuple[str, ...]
    # one variable at a time (a JSON value first, the keys below it after) so that each value, each
    # problem and each origin belongs to exactly one variable
    for var in sorted(ours, key=lambda k: (k.upper().count(_ENV_DELIMITER), k.upper())):
        upper = var.upper()
        if upper == entry_vars or upper.startswith(entry_vars + _ENV_DELIMITER):
            matches = [n for n in entries if upper.startswith(env_var_name(n) + _ENV_DELIMITER)]
            if not matches:
                known = ", ".join(entries) or "none"
                problems.append((var, f"not applied: {_ENTRY_RULE}; the configuration's entries: {known}"))
                continue
            name = max(matches, key=len)  # names are checked to map to distinct variables
            shape, prefix, where = entry_shape, env_var_name(name) + _ENV_DELIMITER, ("exchanges", name)
        else:
            shape, prefix, where = top_shape, ENV_PREFIX, ()
        try:
            read = _MappingEnvSource(shape, {var: ours[var]}, prefix)()
        except SettingsError:  # its message names the field, not the value
            problems.append(
                (var, "not applied: a list or mapping must be given as JSON (e.g. '[\"BTC/USDT\"]')")
            )
            continue
        unset = [_format_loc((*where, *path)) for path in _null_secrets(read)]
        if unset:
            problems.append((var, _SECRET_NULL.format(", ".join(unset))))
            continue
        values = _nulls_to_none(read)
        if not values:
            problems.append(
                (var, "not applied: no configuration key of that name (see docs/configuration.md)")
            )
            continue
        for path in _leaf_paths(values):
            origins[_format_loc((*where, *path))] = var
        for key in reversed(where):
            values = {key: values}
        merged = _deep_merge(merged, values)
    return _EnvOverrides(merged, problems, origins)


_ENTRY_RULE = (
    "an exchange entry's variables are CRYPTOLINK__EXCHANGES__<NAME>__<KEY> for an entry <NAME> of the "
    "configuration file (the environment cannot add entries)"
)


_SECRET_NULL = (
    "not applied: {} is a secret, which the environment cannot unset ('null' is refused for secrets, so that "
    "a stray variable cannot turn authentication off); remove the variable, or the key from the file"
)


def _nulls_to_none(value: Any) -> Any:
    """The string ``null`` (any case) means ``None`` in a variable (secret fields are refused before:
    :func:`_null_secrets`)."""
    if isinstance(value, str):
        return None if value.lower() == _ENV_NULL else value
    if isinstance(value, Mapping):
        return {k: _nulls_to_none(v) for k, v in value.items()}
    return value


def _null_secrets(values: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the secret fields (:data:`_SECRET_FIELDS`) that ``values`` (one variable, as read) sets to
    ``null``: the string ``null`` in any case, or a JSON ``null`` inside a section's JSON."""
    out: list[tuple[str, ...]] = []
    for key, value in values.items():
        here = (*path, str(key))
        if isinstance(value, Mapping):
            out.extend(_null_secrets(value, here))
        elif str(key).lower() in _SECRET_FIELDS and (
            value is None or (isinstance(value, str) and value.lower() == _ENV_NULL)
        ):
            out.append(here)
    return out


def _leaf_paths(values: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in values.items():
        here = (*path, str(key))
        out.extend(_leaf_paths(value, here) if isinstance(value, Mapping) and value else [here])
    return out


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: mappings merge key by key, anything else in ``over`` replaces."""
    out: dict[str, Any] = dict(base)
    for key, value in over.items():
        current = out.get(key)
        out[key] = (
            _deep_merge(current, value)
            if isinstance(value, Mapping) and isinstance(current, Mapping)
            else value
        )
    return out


_SECRET_FIELDS = frozenset({"api_key", "api_secret", "password", "token", "redis_url"})
_OWN_MESSAGES = frozenset({"redis_url", "token"})
"""Secret fields whose validators write messages that never quote the value (kept as they are)."""
_ALL_DISABLED = "every exchange entry is disabled (enabled: false): there is nothing to stream"


def _name_problems(names: list[str]) -> list[str]:
    out: list[str] = []
    bad = [n for n in names if not _NAME_RE.match(n)]
    if bad:
        out.append(f"invalid entry name(s) {bad}; use letters, digits, '_' and '-' (max 64 chars)")
    env_names: dict[str, str] = {}
    for name in names:
        other = env_names.setdefault(env_var_name(name, ""), name)
        if other != name:
            out.append(f"entry names {other!r} and {name!r} map to the same environment variables")
    return out


def _cross_field_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems that span several fields, found on the raw data so that they are reported together with
    every other problem (pydantic runs such checks only once the fields they read are valid)."""
    out: list[tuple[str, str]] = []
    rest = data.get("rest")
    if isinstance(rest, Mapping):
        out.extend((f"rest.{path}", msg) for path, msg in _rest_cross_problems(rest))
    exchanges = data.get("exchanges")
    if not isinstance(exchanges, Mapping) or not exchanges:
        return out
    names = [n for n in exchanges if isinstance(n, str)]
    for msg in _name_problems(names):
        out.append(("exchanges", msg))
    enabled = [e for e in exchanges.values() if not (isinstance(e, Mapping) and e.get("enabled") is False)]
    if not enabled:
        out.append(("exchanges", _ALL_DISABLED))
    for name, entry in exchanges.items():
        if not isinstance(entry, Mapping):
            continue
        symbols = entry.get("symbols")
        if isinstance(symbols, list):
            text = [s for s in symbols if isinstance(s, str)]
            dups = sorted({s for s in text if text.count(s) > 1})
            if dups:
                out.append((f"exchanges.{name}.symbols", f"duplicate symbols {dups}"))
    return out


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(err["loc"])
        msg = str(err["msg"])
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        secret = _SECRET_FIELDS.intersection(p for p in loc if isinstance(p, str))
        if secret and not (kind == "value_error" and secret <= _OWN_MESSAGES):
            msg = f"invalid secret ({kind})"  # never echo anything derived from a secret value
        problems.append((_format_loc(loc), msg))
    return problems
