"""Documented REST rate limits per ccxt exchange id: the pools, each HTTP request's cost, and how to read the
exchange's answers (sans-I/O; every number is a protocol fact with its official URL; tables: docs/rest-limits.md).

- :class:`PoolSpec`: one documented limit of an exchange (``key`` unique within the exchange).
- :class:`RateRules`: per ccxt id, :meth:`RateRules.costs` (pool key -> weight of one request) and
  :meth:`RateRules.feedback` (what a response's status and headers say about the exchange's own counters).
- :func:`rules_for`, :func:`known_exchanges`: the catalog.

Scope: the per-IP limits that public market data and health checks draw on (account/UID order limits are not
modelled). Every endpoint belongs to one *primary* pool (the one an exchange's per-endpoint headers and 429s
refer to). An endpoint missing from an exchange's table gets that exchange's default cost, stated in its builder's
docstring and in the "default" row of docs/rest-limits.md: the exchange's documented default where it has one,
otherwise our conservative choice (the heaviest single-symbol market-data weight, or a shared ``other`` pool at the
exchange's lowest documented public limit).

Where the simulator (:mod:`cryptolink.simulator`) counts more strictly than the docs (one counter shared by
several endpoints, or one pool for a whole host), the pools here follow the simulator so a client that keeps to
these costs never earns a 429 from it; each such case is named in the builder's docstring.
"""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import MappingProxyType

__all__ = [
    "MAX_RETRY_AFTER_S",
    "SHARED_POOLS",
    "Feedback",
    "PoolSpec",
    "RateRules",
    "known_exchanges",
    "rules_for",
]


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One documented limit of an exchange.

    Attributes:
        key: short pool key within the exchange (``"weight"``, ``"raw"``, ``"books"``...).
        limit: units (request weight or request count) allowed per window.
        window_s: window length, s.
        doc: official URL of the documented limit.
    """

    key: str
    limit: int
    window_s: float
    doc: str


@dataclass(frozen=True, slots=True)
class Feedback:
    """What one response says about the exchange's own counters.

    Attributes:
        used: pool key -> the exchange's own count in its current window (from response headers).
        pause_s: 429-like answer: pause the pools this request touched for this long, s; ``None`` otherwise.
        ban_s: 418-like answer (IP ban): ban every pool of the exchange scope for this long, s; ``None`` otherwise.
        garbled: names (lower case) of rate-limit headers present but unreadable; their values were ignored
            (``used`` lacks them; a garbled ``Retry-After`` gives the documented default duration). The caller
            counts them in its stats.
    """

    used: Mapping[str, int]
    pause_s: float | None
    ban_s: float | None
    garbled: tuple[str, ...] = ()


_NO_FEEDBACK = Feedback(MappingProxyType({}), None, None)  # shared: read-only

#: costs function of one endpoint: the request's params -> pool key -> weight (a fresh dict, each >= 1)
CostFn = Callable[[Mapping[str, str]], dict[str, int]]
#: one table entry: (primary pool key, costs function)
Entry = tuple[str, CostFn]

#: longest pause/ban taken from a ``Retry-After`` header: 3 days, the longest Binance IP ban ("IP Limits" of
#: https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits); a larger value is clamped to it
MAX_RETRY_AFTER_S = 3 * 24 * 3600.0


class RateRules:
    """The documented rate limits of one ccxt exchange id.

    Attributes:
        exchange: ccxt id (``"binance"``, ``"binanceusdm"``, ``"okx"``...).
        pools: the documented pools (keys unique); ``pools[0]`` is the exchange's main pool (Binance
            REQUEST_WEIGHT; Bybit/HTX the IP pool; per-endpoint exchanges the order-book endpoint's pool).
        default_costs: the cost of a request to an endpoint not in the table (documented per exchange).
        garbled_count: rate-limit header values this instance could not read (process-wide, since
            :func:`rules_for` returns one shared instance per exchange).

    Built by :func:`rules_for` (args: the pools; ``table`` ``(method, path) -> (primary pool key, costs
    function)``; the ``default`` entry for unknown endpoints; the exchange's feedback reader; ``prefix_defaults``:
    ``(path prefix, entry)`` tried in order before ``default``).

    Raises:
        ValueError: duplicate pool keys, or an entry whose costs name an unknown pool, lack its primary pool or
            weigh less than 1.
    """

    __slots__ = (
        "_feedback",
        "_pools",
        "_prefix_default",
        "_table",
        "_table_default",
        "default_costs",
        "exchange",
        "garbled_count",
        "pools",
    )

    def __init__(
        self,
        exchange: str,
        pools: tuple[PoolSpec, ...],
        table: Mapping[tuple[str, str], Entry],
        default: Entry,
        feedback: Callable[[RateRules, int, Mapping[str, str], str], Feedback],
        prefix_defaults: tuple[tuple[str, Entry], ...] = (),
    ) -> None:
        self._pools = {p.key: p for p in pools}
        if len(self._pools) != len(pools):
            raise ValueError(f"{exchange}: duplicate pool keys")
        self.exchange = exchange
        self.pools = pools
        self._table = dict(table)
        self._prefix_default = prefix_defaults
        self.default_costs: Mapping[str, int] = MappingProxyType(default[1]({}))
        self._feedback = feedback
        self.garbled_count = 0
        for where, (primary, fn) in [*self._table.items(), ("default", default), *prefix_defaults]:
            costs = fn({})
            if primary not in costs or not set(costs) <= set(self._pools) or min(costs.values()) < 1:
                raise ValueError(f"{exchange}: bad costs {costs!r} (primary {primary!r}) for {where!r}")
        self._table_default = default

    def __repr__(self) -> str:
        return f"RateRules({self.exchange!r}, pools={list(self._pools)})"

    def pool(self, key: str) -> PoolSpec:
        """The pool ``key``.

        Raises:
            KeyError: no such pool (the message lists the exchange's pools).
        """
        spec = self._pools.get(key)
        if spec is None:
            raise KeyError(f"{self.exchange} has no pool {key!r}; pools: {', '.join(self._pools)}")
        return spec

    def endpoints(self) -> tuple[tuple[str, str], ...]:
        """Every ``(method, path)`` with a documented cost (sorted)."""
        return tuple(sorted(self._table))

    def _entry(self, method: str, path: str) -> Entry:
        entry = self._table.get((method, path))
        if entry is None:
            entry = self._table.get((method.upper(), path))
            if entry is None:
                for prefix, fallback in self._prefix_default:
                    if path.startswith(prefix):
                        return fallback
                return self._table_default
        return entry

    def costs(self, method: str, path: str, params: Mapping[str, str]) -> dict[str, int]:
        """Pool key -> weight (>= 1) of one request.

        Args:
            method: HTTP method, ``"GET"``, ``"POST"``... (any case).
            path: URL path without host and query (``"/api/v3/depth"``).
            params: query/body params as strings; weights that depend on a param (``limit``, ``symbol``) read it
                here. An unreadable or out-of-range value is charged the heaviest weight of that endpoint.

        Returns:
            a fresh dict, pool key -> weight. An endpoint not in the table gets the exchange's documented default
            (:attr:`default_costs`, or the default of its path prefix, e.g. Binance ``/sapi/``). Never raises.
        """
        return self._entry(method, path)[1](params)

    def primary_pool(self, path: str, method: str = "GET") -> str:
        """The pool an endpoint's per-endpoint headers and 429s refer to (the default's for unknown paths)."""
        return self._entry(method, path)[0]

    def feedback(self, status: int, headers: Mapping[str, str], *, path: str = "") -> Feedback:
        """Read one response's status and rate-limit headers.

        Args:
            status: HTTP status.
            headers: response headers; names are matched case-insensitively.
            path: the request's URL path; names the pool of per-endpoint headers (Gate) and the default pause of
                a 429 without ``Retry-After`` (the window of the path's primary pool: OKX 2 s, ``system/status``
                5 s...). Without it the exchange's default endpoint is assumed.

        Returns:
            :class:`Feedback`; garbled header values are ignored (listed in ``Feedback.garbled`` and counted in
            :attr:`garbled_count`), never raised.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        fb = self._feedback(self, status, lowered, path)
        if fb.garbled:
            self.garbled_count += len(fb.garbled)
        return fb


# ---------------------------------------------------------------------------------------------------------------
# helpers (each builds an Entry; ``extra`` = further pools every request of the endpoint also counts in)


def _fixed(costs: Mapping[str, int], primary: str | None = None) -> Entry:
    frozen = dict(costs)

    def fn(params: Mapping[str, str]) -> dict[str, int]:
        return frozen.copy()

    return (primary or next(iter(frozen)), fn)


def _int_param(params: Mapping[str, str], name: str, default: int) -> int | None:
    """``params[name]`` as int, ``default`` when absent or empty, ``None`` when unreadable."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (ValueError, TypeError):
        return None


def _tiers(
    pool: str,
    bounds: tuple[int, ...],
    weights: tuple[int, ...],
    default_value: int,
    extra: Mapping[str, int] | None = None,
    param: str = "limit",
) -> Entry:
    """Weight by an integer param: ``weights[i]`` for ``bounds[i-1] < value <= bounds[i]`` (``value >= 1``); a
    value below 1, above ``bounds[-1]`` or unreadable is charged the heaviest weight; absent -> ``default_value``."""
    if len(bounds) != len(weights):
        raise ValueError("bounds and weights differ in length")
    top = max(weights)
    rest = dict(extra or {})

    def fn(params: Mapping[str, str]) -> dict[str, int]:
        value = _int_param(params, param, default_value)
        if value is None or value < 1:
            w = top
        else:
            i = bisect_left(bounds, value)
            w = weights[i] if i < len(weights) else top
        out = rest.copy()
        out[pool] = w
        return out

    return (pool, fn)


def _symbol_count(params: Mapping[str, str]) -> int:
    """Symbols a request names: 1 with ``symbol``, the items of a ``symbols`` JSON array, else 0 (all)."""
    if params.get("symbol"):
        return 1
    raw = params.get("symbols")
    if not raw:
        return 0
    inner = raw.strip().strip("[]").strip()
    return inner.count(",") + 1 if inner else 0


def _by_symbols(
    pool: str,
    one: int,
    all_: int,
    tiers: tuple[tuple[int, int], ...] = (),
    extra: Mapping[str, int] | None = None,
) -> Entry:
    """``one`` with ``symbol``; ``all_`` with neither ``symbol`` nor ``symbols``; with ``symbols=[...]`` the weight
    of the first ``(max_count, weight)`` tier holding the count, ``all_`` past the last tier (or with no tiers)."""
    rest = dict(extra or {})

    def fn(params: Mapping[str, str]) -> dict[str, int]:
        n = _symbol_count(params)
        if n == 0:
            w = all_
        elif n == 1 and not params.get("symbols"):
            w = one
        else:
            w = all_
            for upto, tier_weight in tiers:
                if n <= upto:
                    w = tier_weight
                    break
        out = rest.copy()
        out[pool] = w
        return out

    return (pool, fn)


def _per_symbol(pool: str, each: int, cap: int, extra: Mapping[str, int] | None = None) -> Entry:
    """``each`` per symbol named (``symbol`` or ``symbols=[...]``), at most ``cap``; ``cap`` when none is named."""
    rest = dict(extra or {})

    def fn(params: Mapping[str, str]) -> dict[str, int]:
        n = _symbol_count(params)
        out = rest.copy()
        out[pool] = min(cap, each * n) if n else cap
        return out

    return (pool, fn)


def _retry_after(headers: Mapping[str, str], default_s: float, garbled: list[str]) -> float:
    """``Retry-After`` (RFC 9110: delay-seconds or an HTTP-date) in s; absent -> ``default_s``; garbled (not a
    number or date, negative, NaN) -> ``default_s`` and listed; clamped to :data:`MAX_RETRY_AFTER_S`. An HTTP-date
    is measured against the same response's ``Date`` header (no clock needed); without one it counts as garbled.
    An infinite value is garbled too; a finite one above the bound is clamped."""
    raw = headers.get("retry-after")
    if raw is None:
        return default_s
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            value = (
                parsedate_to_datetime(text) - parsedate_to_datetime(headers.get("date", ""))
            ).total_seconds()
    if not math.isfinite(value) or value < 0:
        garbled.append("retry-after")
        return default_s
    return min(value, MAX_RETRY_AFTER_S)


def _count(headers: Mapping[str, str], name: str, garbled: list[str]) -> int | None:
    """A non-negative integer counter header (at most 18 digits); absent -> ``None``; garbled -> ``None`` and
    ``name`` listed in ``garbled``."""
    raw = headers.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    garbled.append(name)
    return None


def _remaining_used(
    headers: Mapping[str, str], remain_name: str, limit_name: str, garbled: list[str]
) -> int | None:
    """``limit - remaining`` from a pair of headers; ``None`` unless both are present and readable with
    ``remaining <= limit`` (a larger remaining is listed as garbled)."""
    remain = _count(headers, remain_name, garbled)
    limit = _count(headers, limit_name, garbled)
    if remain is None or limit is None:
        return None
    if remain > limit:
        garbled.append(remain_name)
        return None
    return limit - remain


def _finish(used: dict[str, int], pause: float | None, ban: float | None, garbled: list[str]) -> Feedback:
    if not used and pause is None and ban is None and not garbled:
        return _NO_FEEDBACK
    return Feedback(used, pause, ban, tuple(garbled))


def _window_pause(rules: RateRules, headers: Mapping[str, str], path: str, garbled: list[str]) -> float:
    """A 429's pause: ``Retry-After`` or, without one, the window of the path's primary pool."""
    return _retry_after(headers, rules.pool(rules.primary_pool(path)).window_s, garbled)


# ---------------------------------------------------------------------------------------------------------------
# Binance (ccxt "binance", "binanceusdm", "binancecoinm")

BINANCE_SPOT_LIMITS_DOC = "https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits"
BINANCE_SPOT_MARKET_DOC = (
    "https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints"
)
BINANCE_SPOT_GENERAL_DOC = (
    "https://developers.binance.com/docs/binance-spot-api-docs/rest-api/general-endpoints"
)
BINANCE_SAPI_LIMITS_DOC = "https://developers.binance.com/docs/wallet/others/system-status"
BINANCE_USDM_INFO_DOC = "https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info"
BINANCE_USDM_MARKET_DOC = (
    "https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api"
)
BINANCE_COINM_INFO_DOC = "https://developers.binance.com/docs/derivatives/coin-margined-futures/general-info"
BINANCE_COINM_MARKET_DOC = (
    "https://developers.binance.com/docs/derivatives/coin-margined-futures/market-data/rest-api"
)

#: 429 without a usable ``Retry-After``: pause 60 s, one whole REQUEST_WEIGHT window ("IP Limits" of
#: BINANCE_SPOT_LIMITS_DOC: the 429's header gives "the number of seconds required to wait ... to prevent a ban")
BINANCE_PAUSE_DEFAULT_S = 60.0
#: 418 without a usable ``Retry-After``: 120 s, the shortest documented IP ban ("from 2 minutes to 3 days")
BINANCE_BAN_DEFAULT_S = 120.0


def _binance_feedback(
    weight_pools: tuple[tuple[str, str | None], ...], sapi_pool: str | None
) -> Callable[[RateRules, int, Mapping[str, str], str], Feedback]:
    """Binance answers ("IP Limits" of BINANCE_SPOT_LIMITS_DOC, same wording in the futures General Info):
    ``X-MBX-USED-WEIGHT-1M`` = the IP's used REQUEST_WEIGHT of the current minute, for the API family of the path
    (``weight_pools``: path prefix -> pool, first match wins, ``""`` matches any path, ``None`` = not counted);
    ``X-SAPI-USED-IP-WEIGHT-1M`` = the ``/sapi/`` IP weight; 429 -> pause ``Retry-After`` s (default
    :data:`BINANCE_PAUSE_DEFAULT_S`); 418 -> ban ``Retry-After`` s (default :data:`BINANCE_BAN_DEFAULT_S`).
    ``X-MBX-ORDER-COUNT-*`` counts orders per account (not modelled) and is ignored."""

    def fn(rules: RateRules, status: int, headers: Mapping[str, str], path: str) -> Feedback:
        garbled: list[str] = []
        used: dict[str, int] = {}
        pool: str | None = None
        for prefix, key in weight_pools:
            if path.startswith(prefix):
                pool = key
                break
        if pool is not None:
            n = _count(headers, "x-mbx-used-weight-1m", garbled)
            if n is not None:
                used[pool] = n
        if sapi_pool is not None:
            n = _count(headers, "x-sapi-used-ip-weight-1m", garbled)
            if n is not None:
                used[sapi_pool] = n
        pause = ban = None
        if status == 429:
            pause = _retry_after(headers, BINANCE_PAUSE_DEFAULT_S, garbled)
        elif status == 418:
            ban = _retry_after(headers, BINANCE_BAN_DEFAULT_S, garbled)
        return _finish(used, pause, ban, garbled)

    return fn


#: "Kline/Candlestick Data" of the futures market-data pages: limit [1,100) -> 1, [100,500) -> 2, [500,1000] -> 5,
#: > 1000 -> 10 (default 500, max 1500)
_FUTURES_KLINES = ((99, 499, 1000, 1500), (1, 2, 5, 10))


def _binance_futures_table(prefix: str, pool: str, premium_weight: int) -> dict[tuple[str, str], Entry]:
    """Public market-data weights shared by USDⓈ-M (``/fapi/v1``) and COIN-M (``/dapi/v1``): the "Market Data"
    REST pages of BINANCE_USDM_MARKET_DOC / BINANCE_COINM_MARKET_DOC."""
    w = pool
    t: dict[tuple[str, str], Entry] = {
        ("GET", f"{prefix}/ping"): _fixed({w: 1}),
        ("GET", f"{prefix}/time"): _fixed({w: 1}),
        ("GET", f"{prefix}/exchangeInfo"): _fixed({w: 1}),
        # "Order Book": limit 5, 10, 20, 50 -> 2; 100 -> 5; 500 -> 10; 1000 -> 20 (default 500)
        ("GET", f"{prefix}/depth"): _tiers(w, (50, 100, 500, 1000), (2, 5, 10, 20), 500),
        ("GET", f"{prefix}/trades"): _fixed({w: 5}),
        ("GET", f"{prefix}/historicalTrades"): _fixed({w: 20}),
        ("GET", f"{prefix}/aggTrades"): _fixed({w: 20}),
        ("GET", f"{prefix}/premiumIndex"): _fixed({w: premium_weight}),
        ("GET", f"{prefix}/fundingRate"): _fixed({w: 1}),
        ("GET", f"{prefix}/fundingInfo"): _fixed({w: 1}),
        ("GET", f"{prefix}/openInterest"): _fixed({w: 1}),
        # "24hr Ticker Price Change Statistics": 1 with symbol, 40 without
        ("GET", f"{prefix}/ticker/24hr"): _by_symbols(w, 1, 40),
        # "Symbol Price Ticker": 1 / 2; "Symbol Order Book Ticker": 2 / 5
        ("GET", f"{prefix}/ticker/price"): _by_symbols(w, 1, 2),
        ("GET", f"{prefix}/ticker/bookTicker"): _by_symbols(w, 2, 5),
    }
    for kind in ("klines", "continuousKlines", "indexPriceKlines", "markPriceKlines", "premiumIndexKlines"):
        t[("GET", f"{prefix}/{kind}")] = _tiers(w, *_FUTURES_KLINES, 500)
    return t


def _binance_usdm_table(pool: str) -> dict[tuple[str, str], Entry]:
    t = _binance_futures_table("/fapi/v1", pool, premium_weight=1)
    t[("GET", "/fapi/v2/ticker/price")] = _by_symbols(pool, 1, 2)
    return t


def _binance_coinm_table(pool: str) -> dict[tuple[str, str], Entry]:
    return _binance_futures_table("/dapi/v1", pool, premium_weight=10)


def _binance_spot() -> RateRules:
    """Binance spot (``api.binance.com``): BINANCE_SPOT_LIMITS_DOC, BINANCE_SPOT_MARKET_DOC.

    Pools per IP: ``weight`` REQUEST_WEIGHT 6000/min and ``raw`` RAW_REQUESTS 61000/5 min (every ``/api/`` request
    counts 1); ``sapi`` the ``/sapi/`` IP weight 12000/min; ``fapi``/``dapi`` the USDⓈ-M/COIN-M REQUEST_WEIGHT
    2400/min that ccxt's ``binance`` id also draws on when it loads linear/inverse markets (its
    ``fetchMarkets.types`` default is ``spot, linear, inverse``). Defaults for unknown endpoints (our choice,
    Binance documents none): ``/api/`` -> weight 25 (the heaviest single-symbol market-data weight, ``trades``) +
    raw 1; ``/sapi/`` -> 10; ``/fapi/``, ``/dapi/`` -> 20 (their heaviest single-symbol weight, ``aggTrades``).
    """
    wr = {"raw": 1}
    t: dict[tuple[str, str], Entry] = {
        ("GET", "/api/v3/ping"): _fixed({"weight": 1, **wr}),
        ("GET", "/api/v3/time"): _fixed({"weight": 1, **wr}),
        ("GET", "/api/v3/exchangeInfo"): _fixed({"weight": 20, **wr}),
        # "Order book": limit 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 -> 250 (default 100)
        ("GET", "/api/v3/depth"): _tiers("weight", (100, 500, 1000, 5000), (5, 25, 50, 250), 100, wr),
        ("GET", "/api/v3/trades"): _fixed({"weight": 25, **wr}),
        ("GET", "/api/v3/historicalTrades"): _fixed({"weight": 25, **wr}),
        ("GET", "/api/v3/aggTrades"): _fixed({"weight": 4, **wr}),
        ("GET", "/api/v3/klines"): _fixed({"weight": 2, **wr}),
        ("GET", "/api/v3/uiKlines"): _fixed({"weight": 2, **wr}),
        ("GET", "/api/v3/avgPrice"): _fixed({"weight": 2, **wr}),
        # "24hr ticker": symbol -> 2, none -> 80; the docs charge ``symbols=[...]`` 2 (1-20), 40 (21-100), 80
        # (>= 101), the simulator 80 whatever the count: we charge its 80 (stricter)
        ("GET", "/api/v3/ticker/24hr"): _by_symbols("weight", 2, 80, (), wr),
        # "Rolling window price change statistics" / "Trading Day Ticker": 4 per symbol, at most 200
        ("GET", "/api/v3/ticker"): _per_symbol("weight", 4, 200, wr),
        ("GET", "/api/v3/ticker/tradingDay"): _per_symbol("weight", 4, 200, wr),
        # "Symbol price ticker" / "Symbol order book ticker": symbol -> 2, none or symbols -> 4
        ("GET", "/api/v3/ticker/price"): _by_symbols("weight", 2, 4, (), wr),
        ("GET", "/api/v3/ticker/bookTicker"): _by_symbols("weight", 2, 4, (), wr),
        # "System Status (System)" of BINANCE_SAPI_LIMITS_DOC: Weight(IP) 1
        ("GET", "/sapi/v1/system/status"): _fixed({"sapi": 1}),
    }
    t.update(_binance_usdm_table("fapi"))
    t.update(_binance_coinm_table("dapi"))
    return RateRules(
        "binance",
        (
            PoolSpec("weight", 6000, 60.0, BINANCE_SPOT_LIMITS_DOC),
            PoolSpec("raw", 61000, 300.0, BINANCE_SPOT_LIMITS_DOC),
            PoolSpec("sapi", 12000, 60.0, BINANCE_SPOT_LIMITS_DOC),
            PoolSpec("fapi", 2400, 60.0, BINANCE_USDM_INFO_DOC),
            PoolSpec("dapi", 2400, 60.0, BINANCE_COINM_INFO_DOC),
        ),
        t,
        _fixed({"weight": 25, **wr}, "weight"),
        _binance_feedback((("/fapi/", "fapi"), ("/dapi/", "dapi"), ("/sapi/", None), ("", "weight")), "sapi"),
        prefix_defaults=(
            ("/sapi/", _fixed({"sapi": 10})),
            ("/fapi/", _fixed({"fapi": 20})),
            ("/dapi/", _fixed({"dapi": 20})),
        ),
    )


def _binance_futures(exchange: str, table: dict[tuple[str, str], Entry], doc: str) -> RateRules:
    """A Binance futures id: ``weight`` REQUEST_WEIGHT 2400/min per IP ("IP Limits" of its General Info page and
    exchangeInfo ``rateLimits``) and ``sapi`` (ccxt's ``fetch_status`` of these ids asks the spot host's
    ``/sapi/v1/system/status``: weight 1 of the ``/sapi/`` IP limit, 12000/min). Unknown endpoints (our choice):
    weight 20, the heaviest single-symbol market-data weight (``aggTrades``, ``historicalTrades``); unknown
    ``/sapi/`` endpoints 10."""
    table[("GET", "/sapi/v1/system/status")] = _fixed({"sapi": 1})
    return RateRules(
        exchange,
        (PoolSpec("weight", 2400, 60.0, doc), PoolSpec("sapi", 12000, 60.0, BINANCE_SPOT_LIMITS_DOC)),
        table,
        _fixed({"weight": 20}),
        _binance_feedback((("/sapi/", None), ("", "weight")), "sapi"),
        prefix_defaults=(("/sapi/", _fixed({"sapi": 10})),),
    )


def _binance_usdm() -> RateRules:
    """Binance USDⓈ-M futures (``fapi.binance.com``, BINANCE_USDM_INFO_DOC): weights of BINANCE_USDM_MARKET_DOC;
    pools and defaults of :func:`_binance_futures`."""
    return _binance_futures("binanceusdm", _binance_usdm_table("weight"), BINANCE_USDM_INFO_DOC)


def _binance_coinm() -> RateRules:
    """Binance COIN-M futures (``dapi.binance.com``, BINANCE_COINM_INFO_DOC): weights of BINANCE_COINM_MARKET_DOC
    (as USDⓈ-M except ``premiumIndex`` 10); pools and defaults of :func:`_binance_futures`."""
    return _binance_futures("binancecoinm", _binance_coinm_table("weight"), BINANCE_COINM_INFO_DOC)


# ---------------------------------------------------------------------------------------------------------------
# OKX (ccxt "okx")

OKX_DOC = "https://www.okx.com/docs-v5/en/"
OKX_LIMITS_DOC = OKX_DOC + "#overview-rate-limits"


def _okx_feedback(rules: RateRules, status: int, headers: Mapping[str, str], path: str) -> Feedback:
    """OKX (OKX_LIMITS_DOC): no rate-limit headers; over a limit the body carries code ``50011`` with HTTP 429
    (or HTTP 200: the caller must pass such an answer as status 429). 429 -> pause ``Retry-After`` if present,
    else the window of the path's pool (2 s; 5 s for ``system/status``)."""
    garbled: list[str] = []
    pause = _window_pause(rules, headers, path, garbled) if status == 429 else None
    return _finish({}, pause, None, garbled)


def _okx() -> RateRules:
    """OKX v5 (OKX_LIMITS_DOC): public REST limits are per IP and per endpoint, each endpoint's "Rate Limit" line
    of OKX_DOC; one pool per endpoint, every request counts 1:

    ``books`` 40/2 s (``#order-book-trading-market-data-get-order-book``), ``books-full`` 10/2 s, ``ticker`` 20/2 s,
    ``tickers`` 20/2 s, ``trades`` 100/2 s, ``history-trades`` 20/2 s, ``candles`` 40/2 s, ``history-candles``
    20/2 s, ``instruments`` 20/2 s (documented per IP *and* instrument type: one pool for all types is stricter,
    and the simulator counts it so), ``time`` 10/2 s (``#public-data-rest-api-get-system-time``), ``status``
    1/5 s (``#status-get-status``). Unknown endpoints (our choice): the shared ``other`` pool, 10/2 s, the lowest
    documented limit among these market-data endpoints.
    """
    md = OKX_DOC + "#order-book-trading-market-data-"
    pools = (
        PoolSpec("books", 40, 2.0, md + "get-order-book"),
        PoolSpec("books-full", 10, 2.0, md + "get-full-order-book"),
        PoolSpec("ticker", 20, 2.0, md + "get-ticker"),
        PoolSpec("tickers", 20, 2.0, md + "get-tickers"),
        PoolSpec("trades", 100, 2.0, md + "get-trades"),
        PoolSpec("history-trades", 20, 2.0, md + "get-trades-history"),
        PoolSpec("candles", 40, 2.0, md + "get-candlesticks"),
        PoolSpec("history-candles", 20, 2.0, md + "get-candlesticks-history"),
        PoolSpec("instruments", 20, 2.0, OKX_DOC + "#public-data-rest-api-get-instruments"),
        PoolSpec("time", 10, 2.0, OKX_DOC + "#public-data-rest-api-get-system-time"),
        PoolSpec("status", 1, 5.0, OKX_DOC + "#status-get-status"),
        PoolSpec("other", 10, 2.0, OKX_LIMITS_DOC),
    )
    paths = {
        "/api/v5/market/books": "books",
        "/api/v5/market/books-full": "books-full",
        "/api/v5/market/ticker": "ticker",
        "/api/v5/market/tickers": "tickers",
        "/api/v5/market/trades": "trades",
        "/api/v5/market/history-trades": "history-trades",
        "/api/v5/market/candles": "candles",
        "/api/v5/market/history-candles": "history-candles",
        "/api/v5/public/instruments": "instruments",
        "/api/v5/public/time": "time",
        "/api/v5/system/status": "status",
    }
    table = {("GET", path): _fixed({key: 1}) for path, key in paths.items()}
    return RateRules("okx", pools, table, _fixed({"other": 1}), _okx_feedback)


# ---------------------------------------------------------------------------------------------------------------
# Bybit (ccxt "bybit")

BYBIT_LIMITS_DOC = "https://bybit-exchange.github.io/docs/v5/rate-limit"
#: 403 "access too frequent" without ``Retry-After``: "wait for at least 10 minutes" (BYBIT_LIMITS_DOC)
BYBIT_BAN_DEFAULT_S = 600.0


def _bybit_feedback(rules: RateRules, status: int, headers: Mapping[str, str], path: str) -> Feedback:
    """Bybit (BYBIT_LIMITS_DOC): 403 = the IP limit was exceeded -> ban ``Retry-After`` s or
    :data:`BYBIT_BAN_DEFAULT_S`; ``X-Bapi-Limit`` (limit) and ``X-Bapi-Limit-Status`` (remaining) ->
    ``used["ip"] = limit - remaining`` on public ``/v5/market/`` paths (and when no path is given). The docs define
    those headers per UID and endpoint for private calls, which the ``ip`` pool does not model: they are ignored on
    other paths. A 429 (undocumented) pauses for ``Retry-After`` or the 5 s window."""
    garbled: list[str] = []
    used: dict[str, int] = {}
    if not path or path.startswith("/v5/market/"):
        n = _remaining_used(headers, "x-bapi-limit-status", "x-bapi-limit", garbled)
        if n is not None:
            used["ip"] = n
    pause = ban = None
    if status == 403:
        ban = _retry_after(headers, BYBIT_BAN_DEFAULT_S, garbled)
    elif status == 429:
        pause = _window_pause(rules, headers, path, garbled)
    return _finish(used, pause, ban, garbled)


def _bybit() -> RateRules:
    """Bybit v5 (BYBIT_LIMITS_DOC): 600 requests per 5 s window per IP for all traffic to api.bybit.com (one
    ``ip`` pool, every request counts 1, unknown endpoints too); beyond it HTTP 403 and a ban of at least 10 min."""
    paths = (
        "/v5/market/time",
        "/v5/market/instruments-info",
        "/v5/market/orderbook",
        "/v5/market/recent-trade",
        "/v5/market/tickers",
        "/v5/market/kline",
        "/v5/market/mark-price-kline",
        "/v5/market/index-price-kline",
        "/v5/market/premium-index-price-kline",
        "/v5/system/status",
    )
    return RateRules(
        "bybit",
        (PoolSpec("ip", 600, 5.0, BYBIT_LIMITS_DOC),),
        {("GET", p): _fixed({"ip": 1}) for p in paths},
        _fixed({"ip": 1}),
        _bybit_feedback,
    )


# ---------------------------------------------------------------------------------------------------------------
# Gate (ccxt "gate")

GATE_LIMITS_DOC = "https://www.gate.com/announcements/article/33995"
GATE_API_DOC = "https://www.gate.com/docs/developers/apiv4/en/"


def _gate_feedback(rules: RateRules, status: int, headers: Mapping[str, str], path: str) -> Feedback:
    """Gate (GATE_API_DOC "Rate Limit"): every answer carries ``X-Gate-RateLimit-Requests-Remain`` and
    ``X-Gate-RateLimit-Limit`` for the endpoint's own limit -> ``used[<path's pool>] = limit - remain``; 429 ->
    pause ``Retry-After`` or the 10 s window."""
    garbled: list[str] = []
    used: dict[str, int] = {}
    n = _remaining_used(headers, "x-gate-ratelimit-requests-remain", "x-gate-ratelimit-limit", garbled)
    if n is not None:
        used[rules.primary_pool(path)] = n
    pause = _window_pause(rules, headers, path, garbled) if status == 429 else None
    return _finish(used, pause, None, garbled)


def _gate() -> RateRules:
    """Gate API v4 (GATE_LIMITS_DOC, effective 2024-01-22): public endpoints 200 requests per 10 s per endpoint
    per IP; one pool per endpoint (``{settle}`` paths of one endpoint share its pool), every request counts 1.
    Unknown endpoints (our choice): one shared ``other`` pool, 200/10 s."""
    spot = {
        "spot_book": "/spot/order_book",
        "time": "/spot/time",
        "currencies": "/spot/currencies",
        "currency_pairs": "/spot/currency_pairs",
        "margin_pairs": "/margin/currency_pairs",
        "spot_trades": "/spot/trades",
        "spot_tickers": "/spot/tickers",
        "spot_candles": "/spot/candlesticks",
        "options_underlyings": "/options/underlyings",
        "options_contracts": "/options/contracts",
    }
    settled = {
        "futures_contracts": "/futures/{settle}/contracts",
        "futures_book": "/futures/{settle}/order_book",
        "futures_trades": "/futures/{settle}/trades",
        "futures_tickers": "/futures/{settle}/tickers",
        "futures_candles": "/futures/{settle}/candlesticks",
        "delivery_contracts": "/delivery/{settle}/contracts",
        "delivery_book": "/delivery/{settle}/order_book",
        "delivery_trades": "/delivery/{settle}/trades",
        "delivery_tickers": "/delivery/{settle}/tickers",
    }
    table: dict[tuple[str, str], Entry] = {}
    for key, path in spot.items():
        table[("GET", "/api/v4" + path)] = _fixed({key: 1})
    for key, path in settled.items():
        for settle in ("usdt", "btc", "usd"):
            table[("GET", "/api/v4" + path.replace("{settle}", settle))] = _fixed({key: 1})
    keys = [*spot, *settled, "other"]
    return RateRules(
        "gate",
        tuple(PoolSpec(k, 200, 10.0, GATE_LIMITS_DOC) for k in keys),
        table,
        _fixed({"other": 1}),
        _gate_feedback,
    )


# ---------------------------------------------------------------------------------------------------------------
# Bitget (ccxt "bitget")

BITGET_DOC = "https://www.bitget.com/api-doc/"


def _bitget_feedback(rules: RateRules, status: int, headers: Mapping[str, str], path: str) -> Feedback:
    """Bitget (BITGET_DOC "Frequency limit" of each endpoint): no rate-limit headers documented; 429 -> pause
    ``Retry-After`` or the 1 s window."""
    garbled: list[str] = []
    pause = _window_pause(rules, headers, path, garbled) if status == 429 else None
    return _finish({}, pause, None, garbled)


def _bitget() -> RateRules:
    """Bitget API v2 (BITGET_DOC): per-endpoint limits per second per IP (each endpoint's "Frequency limit"):
    ``time`` 20/s (common/public/Get-Server-Time), ``symbols`` 20/s, ``coins`` 3/s, ``currencies`` (margin) 10/s,
    ``contracts`` 20/s, ``orderbook`` 20/s, ``merge-depth`` 20/s, ``tickers`` 20/s, ``spot-fills`` 10/s,
    ``mix-fills`` 20/s, ``fills-history`` 10/s. The simulator counts spot and futures ``merge-depth``,
    ``fills-history`` and the three ticker endpoints on one counter each, stricter than the docs (separate
    endpoints): the pools follow it. Unknown endpoints (our choice): one shared ``other`` pool at 3/s, the lowest
    documented public limit (``coins``)."""
    paths = {
        "/api/v2/public/time": "time",
        "/api/v2/spot/public/symbols": "symbols",
        "/api/v2/spot/public/coins": "coins",
        "/api/v2/margin/currencies": "currencies",
        "/api/v2/mix/market/contracts": "contracts",
        "/api/v2/spot/market/orderbook": "orderbook",
        "/api/v2/spot/market/merge-depth": "merge-depth",
        "/api/v2/mix/market/merge-depth": "merge-depth",
        "/api/v2/spot/market/tickers": "tickers",
        "/api/v2/mix/market/ticker": "tickers",
        "/api/v2/mix/market/tickers": "tickers",
        "/api/v2/spot/market/fills": "spot-fills",
        "/api/v2/mix/market/fills": "mix-fills",
        "/api/v2/spot/market/fills-history": "fills-history",
        "/api/v2/mix/market/fills-history": "fills-history",
    }
    limits = {
        "orderbook": (20, "spot/market/Get-Orderbook"),
        "time": (20, "common/public/Get-Server-Time"),
        "symbols": (20, "spot/market/Get-Symbols"),
        "coins": (3, "spot/market/Get-Coin-List"),
        "currencies": (10, ""),
        "contracts": (20, "contract/market/Get-All-Symbols-Contracts"),
        "merge-depth": (20, "contract/market/Get-Merge-Depth"),
        "tickers": (20, "spot/market/Get-Tickers"),
        "spot-fills": (10, "spot/market/Get-Recent-Trades"),
        "mix-fills": (20, "contract/market/Get-Recent-Fills"),
        "fills-history": (10, "spot/market/Get-Market-Trades"),
        "other": (3, "spot/market/Get-Coin-List"),
    }
    return RateRules(
        "bitget",
        tuple(PoolSpec(k, n, 1.0, BITGET_DOC + page) for k, (n, page) in limits.items()),
        {("GET", p): _fixed({k: 1}) for p, k in paths.items()},
        _fixed({"other": 1}),
        _bitget_feedback,
    )


# ---------------------------------------------------------------------------------------------------------------
# HTX (ccxt "htx")

HTX_SWAP_DOC = "https://huobiapi.github.io/docs/usdt_swap/v1/en/#api-rate-limit-illustration"
HTX_SPOT_DOC = "https://huobiapi.github.io/docs/spot/v1/en/#rate-limiting-rule"


def _htx_feedback(rules: RateRules, status: int, headers: Mapping[str, str], path: str) -> Feedback:
    """HTX: over a limit ``err-code`` ``rate-too-many-requests`` (HTTP status not documented; the caller passes
    such an answer as 429) -> pause ``Retry-After`` or the 3 s window. ``X-HB-RateLimit-Requests-Remain`` is
    documented for the per-UID limits only and carries no limit to subtract from: ignored."""
    garbled: list[str] = []
    pause = _window_pause(rules, headers, path, garbled) if status == 429 else None
    return _finish({}, pause, None, garbled)


def _htx() -> RateRules:
    """HTX (HTX_SWAP_DOC "API Rate Limit Illustration"): public market-data interfaces 800 requests/s per IP,
    other public interfaces 120 requests per 3 s per IP (HTX_SPOT_DOC: spot limits per endpoint). The simulator
    counts every REST request of both hosts in one 120 per 3 s window: one ``ip`` pool, every request (unknown
    endpoints too) counts 1 - within every documented limit."""
    paths = (
        "/v1/common/timestamp",
        "/v1/common/symbols",
        "/v2/reference/currencies",
        "/v2/market-status",
        "/market/depth",
        "/market/history/trade",
        "/market/detail/merged",
        "/market/tickers",
        "/api/v1/timestamp",
        "/heartbeat/",
        "/linear-swap-api/v1/swap_contract_info",
        "/swap-api/v1/swap_contract_info",
        "/api/v1/contract_contract_info",
        "/linear-swap-ex/market/depth",
        "/linear-swap-ex/market/history/trade",
        "/linear-swap-ex/market/detail/merged",
        "/linear-swap-ex/market/detail/batch_merged",
    )
    return RateRules(
        "htx",
        (PoolSpec("ip", 120, 3.0, HTX_SWAP_DOC),),
        {("GET", p): _fixed({"ip": 1}) for p in paths},
        _fixed({"ip": 1}),
        _htx_feedback,
    )


# ---------------------------------------------------------------------------------------------------------------
# catalog

#: pools of one id that are the *same* per-IP limit as a pool of another id (same limit and window): ``(id, key)
#: -> (owner id, owner key)``. ccxt's ``binance`` loads linear/inverse markets from the futures hosts, and the
#: futures ids' ``fetch_status`` asks the spot host's ``/sapi/``: a budget registry that keys these pools by the
#: owner's name makes every id on one IP draw from one count.
SHARED_POOLS: Mapping[tuple[str, str], tuple[str, str]] = MappingProxyType(
    {
        ("binance", "fapi"): ("binanceusdm", "weight"),
        ("binance", "dapi"): ("binancecoinm", "weight"),
        ("binanceusdm", "sapi"): ("binance", "sapi"),
        ("binancecoinm", "sapi"): ("binance", "sapi"),
    }
)

_BUILDERS: dict[str, Callable[[], RateRules]] = {
    "binance": _binance_spot,
    "binanceusdm": _binance_usdm,
    "binancecoinm": _binance_coinm,
    "okx": _okx,
    "bybit": _bybit,
    "gate": _gate,
    "bitget": _bitget,
    "htx": _htx,
}
_CACHE: dict[str, RateRules] = {}


def known_exchanges() -> tuple[str, ...]:
    """The ccxt ids with documented rules (sorted)."""
    return tuple(sorted(_BUILDERS))


def rules_for(exchange: str) -> RateRules:
    """The (shared, process-wide) rules of ccxt id ``exchange``.

    Raises:
        KeyError: unknown id; the message lists the known ids.
    """
    rules = _CACHE.get(exchange)
    if rules is None:
        builder = _BUILDERS.get(exchange)
        if builder is None:
            raise KeyError(f"no rate rules for exchange {exchange!r}; known: {', '.join(known_exchanges())}")
        rules = _CACHE[exchange] = builder()
    return rules
