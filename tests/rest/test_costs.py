"""The rate-limit catalog (cryptolink.rest.costs): documented pools, weights by param at their boundaries, defaults,
reading the exchanges' answers, and cross-checks against what the simulator charges and what ccxt sends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink.clock import FakeClock
from cryptolink.rest.costs import (
    MAX_RETRY_AFTER_S,
    SHARED_POOLS,
    Feedback,
    RateRules,
    known_exchanges,
    rules_for,
)
from cryptolink.simulator import Simulator
from cryptolink.simulator.bitget import BITGET_RULES
from cryptolink.simulator.bitget import REST_LIMITS as BITGET_SIM_LIMITS
from cryptolink.simulator.bybit import BYBIT_RULES
from cryptolink.simulator.config import OKX_RULES
from cryptolink.simulator.gate import GATE_RULES
from cryptolink.simulator.htx import HTX_RULES
from cryptolink.simulator.okx import REST_LIMITS as OKX_SIM_LIMITS
from tests.simulator.ccxt_hosts import point_at

EXCHANGES = ("binance", "binancecoinm", "binanceusdm", "bitget", "bybit", "gate", "htx", "okx")


# ---- catalog and pools ------------------------------------------------------------------------------------------


def test_the_catalog_holds_every_exchange_the_simulator_serves() -> None:
    assert known_exchanges() == EXCHANGES
    for ex in EXCHANGES:
        rules = rules_for(ex)
        assert rules.exchange == ex
        assert rules_for(ex) is rules  # one shared instance per id
        assert len({p.key for p in rules.pools}) == len(rules.pools)


def test_an_unknown_exchange_raises_keyerror_naming_the_known_ids() -> None:
    with pytest.raises(
        KeyError, match=r"'nope'.*known: binance, binancecoinm, binanceusdm, bitget, bybit, gate"
    ):
        rules_for("nope")


@pytest.mark.parametrize(
    ("exchange", "key", "limit", "window_s"),
    [
        ("binance", "weight", 6000, 60.0),
        ("binance", "raw", 61000, 300.0),
        ("binance", "sapi", 12000, 60.0),
        ("binance", "fapi", 2400, 60.0),
        ("binance", "dapi", 2400, 60.0),
        ("binanceusdm", "weight", 2400, 60.0),
        ("binancecoinm", "weight", 2400, 60.0),
        ("okx", "books", 40, 2.0),
        ("okx", "books-full", 10, 2.0),
        ("okx", "ticker", 20, 2.0),
        ("okx", "tickers", 20, 2.0),
        ("okx", "trades", 100, 2.0),
        ("okx", "history-trades", 20, 2.0),
        ("okx", "instruments", 20, 2.0),
        ("okx", "time", 10, 2.0),
        ("okx", "status", 1, 5.0),
        ("okx", "other", 10, 2.0),
        ("bybit", "ip", 600, 5.0),
        ("gate", "spot_book", 200, 10.0),
        ("gate", "futures_contracts", 200, 10.0),
        ("gate", "other", 200, 10.0),
        ("bitget", "orderbook", 20, 1.0),
        ("bitget", "coins", 3, 1.0),
        ("bitget", "fills-history", 10, 1.0),
        ("bitget", "other", 3, 1.0),
        ("htx", "ip", 120, 3.0),
    ],
)
def test_pools_carry_the_documented_numbers(exchange: str, key: str, limit: int, window_s: float) -> None:
    spec = rules_for(exchange).pool(key)
    assert (spec.limit, spec.window_s) == (limit, window_s)
    assert spec.doc.startswith("https://")


def test_the_main_pool_comes_first() -> None:
    firsts = {ex: rules_for(ex).pools[0].key for ex in EXCHANGES}
    assert firsts == {
        "binance": "weight",
        "binancecoinm": "weight",
        "binanceusdm": "weight",
        "bitget": "orderbook",
        "bybit": "ip",
        "gate": "spot_book",
        "htx": "ip",
        "okx": "books",
    }


def test_shared_pools_name_the_same_limit_under_both_ids() -> None:
    assert SHARED_POOLS[("binance", "fapi")] == ("binanceusdm", "weight")
    for (ex, key), (owner, owner_key) in SHARED_POOLS.items():
        mine, theirs = rules_for(ex).pool(key), rules_for(owner).pool(owner_key)
        assert (mine.limit, mine.window_s) == (theirs.limit, theirs.window_s), (ex, key)


def test_an_unknown_pool_key_raises_keyerror_listing_the_pools() -> None:
    with pytest.raises(KeyError, match="okx has no pool 'nope'; pools: books, books-full"):
        rules_for("okx").pool("nope")


# ---- weights ----------------------------------------------------------------------------------------------------


def _w(exchange: str, path: str, params: Mapping[str, str] | None = None, pool: str = "weight") -> int:
    return rules_for(exchange).costs("GET", path, params or {})[pool]


@pytest.mark.parametrize(
    ("limit", "weight"),
    [
        ("1", 5), ("100", 5), ("101", 25), ("500", 25), ("501", 50), ("1000", 50), ("1001", 250), ("5000", 250),
        (None, 5),  # default limit 100
        ("5001", 250), ("0", 250), ("-3", 250), ("abc", 250), ("", 5),  # out of range / unreadable: heaviest
    ],
)  # fmt: skip
def test_binance_spot_depth_weight_by_limit(limit: str | None, weight: int) -> None:
    params = {"symbol": "BTCUSDT"} | ({} if limit is None else {"limit": limit})
    assert rules_for("binance").costs("GET", "/api/v3/depth", params) == {"weight": weight, "raw": 1}


@pytest.mark.parametrize("exchange", ["binanceusdm", "binancecoinm"])
@pytest.mark.parametrize(
    ("limit", "weight"),
    [("5", 2), ("50", 2), ("51", 5), ("100", 5), ("101", 10), ("500", 10), ("501", 20), ("1000", 20),
     (None, 10), ("1001", 20), ("x", 20)],
)  # fmt: skip
def test_binance_futures_depth_weight_by_limit(exchange: str, limit: str | None, weight: int) -> None:
    prefix = "/fapi/v1" if exchange == "binanceusdm" else "/dapi/v1"
    params = {"symbol": "BTCUSDT"} | ({} if limit is None else {"limit": limit})
    assert rules_for(exchange).costs("GET", f"{prefix}/depth", params) == {"weight": weight}


@pytest.mark.parametrize(
    ("limit", "weight"),
    [
        ("1", 1),
        ("99", 1),
        ("100", 2),
        ("499", 2),
        ("500", 5),
        ("1000", 5),
        ("1001", 10),
        ("1500", 10),
        (None, 5),
    ],
)
def test_binance_futures_klines_weight_by_limit(limit: str | None, weight: int) -> None:
    params = {"symbol": "BTCUSDT"} | ({} if limit is None else {"limit": limit})
    assert _w("binanceusdm", "/fapi/v1/klines", params) == weight


def test_binance_tickers_weigh_one_symbol_less_than_all() -> None:
    one, some = {"symbol": "BTCUSDT"}, {"symbols": '["BTCUSDT","ETHUSDT"]'}
    assert (_w("binance", "/api/v3/ticker/24hr", one), _w("binance", "/api/v3/ticker/24hr")) == (2, 80)
    assert _w("binance", "/api/v3/ticker/24hr", some) == 80  # the simulator's charge (docs: 2)
    assert (
        _w("binance", "/api/v3/ticker/bookTicker", one),
        _w("binance", "/api/v3/ticker/bookTicker", some),
    ) == (
        2,
        4,
    )
    assert _w("binance", "/api/v3/ticker", some) == 8  # 4 per symbol
    assert _w("binance", "/api/v3/ticker") == 200
    assert (_w("binanceusdm", "/fapi/v1/ticker/24hr", one), _w("binanceusdm", "/fapi/v1/ticker/24hr")) == (
        1,
        40,
    )
    assert (_w("binancecoinm", "/dapi/v1/premiumIndex"), _w("binanceusdm", "/fapi/v1/premiumIndex")) == (
        10,
        1,
    )


def test_binance_spot_charges_fapi_and_dapi_paths_to_their_own_pools() -> None:
    rules = rules_for("binance")
    assert rules.costs("GET", "/fapi/v1/exchangeInfo", {}) == {"fapi": 1}
    assert rules.costs("GET", "/dapi/v1/depth", {"limit": "1000"}) == {"dapi": 20}
    assert rules.costs("GET", "/sapi/v1/system/status", {}) == {"sapi": 1}
    assert rules_for("binanceusdm").costs("GET", "/sapi/v1/system/status", {}) == {"sapi": 1}


def test_unknown_endpoints_get_the_documented_default() -> None:
    assert rules_for("binance").costs("GET", "/api/v3/whatever", {}) == {"weight": 25, "raw": 1}
    assert rules_for("binance").default_costs == {"weight": 25, "raw": 1}
    assert rules_for("binance").costs("GET", "/sapi/v1/whatever", {}) == {"sapi": 10}
    assert rules_for("binance").costs("GET", "/fapi/v9/whatever", {}) == {"fapi": 20}
    assert rules_for("binanceusdm").costs("GET", "/fapi/v1/whatever", {}) == {"weight": 20}
    assert rules_for("okx").costs("GET", "/api/v5/public/mark-price", {}) == {"other": 1}
    assert rules_for("gate").costs("GET", "/api/v4/futures/eur/order_book", {}) == {"other": 1}
    assert rules_for("bitget").costs("GET", "/api/v3/market/instruments", {}) == {"other": 1}
    assert rules_for("bybit").costs("POST", "/v5/order/create", {}) == {"ip": 1}
    assert rules_for("htx").costs("GET", "/nope", {}) == {"ip": 1}
    # a known path with another method is not that endpoint
    assert rules_for("okx").costs("POST", "/api/v5/market/books", {}) == {"other": 1}


def test_method_case_does_not_matter() -> None:
    assert rules_for("okx").costs("get", "/api/v5/market/books", {"instId": "BTC-USDT"}) == {"books": 1}


def test_per_endpoint_exchanges_charge_each_endpoint_to_its_pool() -> None:
    okx = rules_for("okx")
    assert okx.costs("GET", "/api/v5/market/history-trades", {}) == {"history-trades": 1}
    assert okx.costs("GET", "/api/v5/system/status", {}) == {"status": 1}
    gate = rules_for("gate")
    assert gate.costs("GET", "/api/v4/futures/usdt/contracts", {}) == {"futures_contracts": 1}
    assert gate.costs("GET", "/api/v4/futures/btc/contracts", {}) == {"futures_contracts": 1}
    bitget = rules_for("bitget")
    assert bitget.costs("GET", "/api/v2/mix/market/ticker", {}) == {"tickers": 1}


def test_costs_returns_a_fresh_dict() -> None:
    rules = rules_for("binance")
    first = rules.costs("GET", "/api/v3/time", {})
    first["weight"] = 10_000
    assert rules.costs("GET", "/api/v3/time", {}) == {"weight": 1, "raw": 1}


_TEXT = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    exchange=st.sampled_from(EXCHANGES),
    method=st.sampled_from(["GET", "get", "POST", "DELETE", "", "\x00"]) | _TEXT,
    path=st.sampled_from([p for ex in EXCHANGES for _, p in rules_for(ex).endpoints()]) | _TEXT,
    params=st.dictionaries(
        st.sampled_from(["limit", "symbol", "symbols", "x"]) | _TEXT,
        st.sampled_from(["", "[]", "[,]", "9" * 5000, "-1", "1e3", "٣"]) | _TEXT,
        max_size=4,
    ),
)
def test_costs_never_raise_and_never_weigh_less_than_one(
    exchange: str, method: str, path: str, params: dict[str, str]
) -> None:
    rules = rules_for(exchange)
    costs = rules.costs(method, path, params)
    assert costs
    assert min(costs.values()) >= 1
    assert set(costs) <= {p.key for p in rules.pools}


# ---- feedback ---------------------------------------------------------------------------------------------------


def _fb(exchange: str, status: int, headers: Mapping[str, str], path: str = "") -> Feedback:
    return rules_for(exchange).feedback(status, headers, path=path)


def test_binance_used_weight_header_reports_the_pool_of_the_path() -> None:
    assert _fb("binance", 200, {"X-MBX-USED-WEIGHT-1M": "123"}).used == {"weight": 123}
    assert _fb("binance", 200, {"x-mbx-used-weight-1m": "7"}, "/fapi/v1/exchangeInfo").used == {"fapi": 7}
    assert _fb("binance", 200, {"X-Sapi-Used-IP-Weight-1M": "3"}, "/sapi/v1/system/status").used == {
        "sapi": 3
    }
    assert _fb("binanceusdm", 200, {"X-Mbx-Used-Weight-1m": "40"}).used == {"weight": 40}
    fb = _fb("binance", 200, {"X-MBX-USED-WEIGHT-1M": "5", "X-MBX-ORDER-COUNT-10S": "2"})
    assert (fb.pause_s, fb.ban_s, fb.garbled) == (None, None, ())


def test_binance_429_pauses_for_retry_after_or_a_minute() -> None:
    fb = _fb("binance", 429, {"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "6001"})
    assert (fb.pause_s, fb.ban_s, dict(fb.used)) == (7.0, None, {"weight": 6001})
    assert _fb("binance", 429, {}).pause_s == 60.0


def test_binance_418_bans_for_retry_after_or_two_minutes() -> None:
    fb = _fb("binance", 418, {"retry-after": "300"})
    assert (fb.pause_s, fb.ban_s) == (None, 300.0)
    assert _fb("binance", 418, {}).ban_s == 120.0
    date_form = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT", "Date": "Wed, 21 Oct 2015 07:26:30 GMT"}
    assert _fb("binance", 418, date_form).ban_s == 90.0
    assert _fb("binance", 418, {"Retry-After": str(10**9)}).ban_s == MAX_RETRY_AFTER_S


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", "", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_garbled_retry_after_gives_the_default_and_is_counted(value: str) -> None:
    rules = rules_for("binance")
    before = rules.garbled_count
    fb = rules.feedback(429, {"Retry-After": value}, path="/api/v3/depth")
    assert fb.pause_s == 60.0
    assert fb.garbled == ("retry-after",)
    assert rules.garbled_count == before + 1


@pytest.mark.parametrize("value", ["12x", "-1", "1.5", "", "١٢", "9" * 30])
def test_a_garbled_used_weight_is_ignored_and_counted(value: str) -> None:
    rules = rules_for("binanceusdm")
    before = rules.garbled_count
    fb = rules.feedback(200, {"X-MBX-USED-WEIGHT-1M": value})
    assert fb.used == {}
    assert fb.garbled == ("x-mbx-used-weight-1m",)
    assert rules.garbled_count == before + 1


def test_a_plain_answer_says_nothing() -> None:
    for ex in EXCHANGES:
        fb = _fb(ex, 200, {"Content-Type": "application/json"})
        assert (dict(fb.used), fb.pause_s, fb.ban_s, fb.garbled) == ({}, None, None, ())


def test_okx_429_pauses_for_the_window_of_the_endpoint() -> None:
    assert _fb("okx", 429, {}, "/api/v5/market/books").pause_s == 2.0
    assert _fb("okx", 429, {}, "/api/v5/system/status").pause_s == 5.0
    assert _fb("okx", 429, {"Retry-After": "1"}, "/api/v5/market/books").pause_s == 1.0
    assert _fb("okx", 429, {}).pause_s == 2.0  # no path: the "other" pool's window


def test_bybit_403_bans_for_ten_minutes_and_headers_report_the_ip_count() -> None:
    headers = {"X-Bapi-Limit": "600", "X-Bapi-Limit-Status": "0"}
    fb = _fb("bybit", 403, headers, "/v5/market/orderbook")
    assert (fb.ban_s, fb.pause_s, dict(fb.used)) == (600.0, None, {"ip": 600})
    assert _fb("bybit", 403, {"Retry-After": "30"}).ban_s == 30.0
    assert _fb("bybit", 200, {"x-bapi-limit": "600", "x-bapi-limit-status": "555"}).used == {"ip": 45}
    # per-UID private endpoint headers are not the IP pool's count
    assert (
        _fb("bybit", 200, {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "9"}, "/v5/order/create").used == {}
    )
    fb = _fb("bybit", 200, {"X-Bapi-Limit": "600", "X-Bapi-Limit-Status": "601"}, "/v5/market/time")
    assert (dict(fb.used), fb.garbled) == ({}, ("x-bapi-limit-status",))


def test_gate_headers_report_the_count_of_the_endpoint_pool() -> None:
    headers = {"X-Gate-RateLimit-Requests-Remain": "150", "X-Gate-RateLimit-Limit": "200"}
    assert _fb("gate", 200, headers, "/api/v4/spot/order_book").used == {"spot_book": 50}
    assert _fb("gate", 200, headers, "/api/v4/futures/usdt/trades").used == {"futures_trades": 50}
    assert _fb("gate", 200, headers, "/api/v4/unknown").used == {"other": 50}
    fb = _fb("gate", 429, {"X-Gate-RateLimit-Requests-Remain": "0", "X-Gate-RateLimit-Limit": "200"})
    assert (fb.pause_s, dict(fb.used)) == (10.0, {"other": 200})
    fb = _fb("gate", 200, {"X-Gate-RateLimit-Requests-Remain": "lots", "X-Gate-RateLimit-Limit": "200"})
    assert (dict(fb.used), fb.garbled) == ({}, ("x-gate-ratelimit-requests-remain",))
    assert _fb("gate", 200, {"X-Gate-RateLimit-Limit": "200"}).used == {}  # one of the pair says nothing


def test_bitget_and_htx_429_pause_for_their_window() -> None:
    assert _fb("bitget", 429, {}, "/api/v2/spot/market/orderbook").pause_s == 1.0
    assert _fb("htx", 429, {"X-HB-RateLimit-Requests-Remain": "0"}, "/market/depth").pause_s == 3.0
    assert _fb("htx", 200, {"X-HB-RateLimit-Requests-Remain": "5"}).used == {}


@settings(max_examples=200, deadline=None)
@given(
    exchange=st.sampled_from(EXCHANGES),
    status=st.sampled_from([200, 403, 418, 429, 500]) | st.integers(-1000, 1000),
    headers=st.dictionaries(
        st.sampled_from(
            ["Retry-After", "X-MBX-USED-WEIGHT-1M", "X-SAPI-USED-IP-WEIGHT-1M", "X-Bapi-Limit", "X-Bapi-Limit-Status",
             "X-Gate-RateLimit-Requests-Remain", "X-Gate-RateLimit-Limit", "Date"]
        ) | _TEXT,
        st.sampled_from(["1", "0", "-1", "1e999", "nan", "Wed, 21 Oct 2015 07:28:00 GMT"]) | _TEXT,
        max_size=5,
    ),
    path=_TEXT,
)  # fmt: skip
def test_feedback_never_raises(exchange: str, status: int, headers: dict[str, str], path: str) -> None:
    rules = rules_for(exchange)
    fb = rules.feedback(status, headers, path=path)
    assert all(v >= 0 for v in fb.used.values())
    assert set(fb.used) <= {p.key for p in rules.pools}
    for duration in (fb.pause_s, fb.ban_s):
        assert duration is None or 0 <= duration <= MAX_RETRY_AFTER_S


# ---- cross-checks with the simulator ----------------------------------------------------------------------------

#: the simulator's per-endpoint counters (the keys its handlers pass to their limiter), read from
#: cryptolink/simulator/{okx,bitget,gate}.py: (exchange, path, simulator counter key)
_SIM_COUNTERS = [
    ("okx", "/api/v5/public/time", "time"),
    ("okx", "/api/v5/public/instruments", "instruments"),
    ("okx", "/api/v5/market/books", "books"),
    ("okx", "/api/v5/market/ticker", "ticker"),
    ("okx", "/api/v5/market/tickers", "tickers"),
    ("okx", "/api/v5/market/trades", "trades"),
    ("okx", "/api/v5/market/history-trades", "history-trades"),
    ("bitget", "/api/v2/public/time", "time"),
    ("bitget", "/api/v2/spot/public/symbols", "symbols"),
    ("bitget", "/api/v2/margin/currencies", "currencies"),
    ("bitget", "/api/v2/spot/public/coins", "coins"),
    ("bitget", "/api/v2/mix/market/contracts", "contracts"),
    ("bitget", "/api/v2/spot/market/orderbook", "orderbook"),
    ("bitget", "/api/v2/spot/market/merge-depth", "merge-depth"),
    ("bitget", "/api/v2/mix/market/merge-depth", "merge-depth"),
    ("bitget", "/api/v2/spot/market/tickers", "tickers"),
    ("bitget", "/api/v2/mix/market/ticker", "tickers"),
    ("bitget", "/api/v2/mix/market/tickers", "tickers"),
    ("bitget", "/api/v2/spot/market/fills", "spot-fills"),
    ("bitget", "/api/v2/mix/market/fills", "mix-fills"),
    ("bitget", "/api/v2/spot/market/fills-history", "fills-history"),
    ("bitget", "/api/v2/mix/market/fills-history", "fills-history"),
    ("gate", "/api/v4/spot/time", "time"),
    ("gate", "/api/v4/spot/currency_pairs", "currency_pairs"),
    ("gate", "/api/v4/spot/currencies", "currencies"),
    ("gate", "/api/v4/margin/currency_pairs", "margin_pairs"),
    ("gate", "/api/v4/futures/usdt/contracts", "contracts"),
    ("gate", "/api/v4/futures/btc/contracts", "contracts"),
    ("gate", "/api/v4/delivery/usdt/contracts", "delivery"),
    ("gate", "/api/v4/options/underlyings", "options"),
    ("gate", "/api/v4/spot/order_book", "spot_book"),
    ("gate", "/api/v4/futures/usdt/order_book", "futures_book"),
    ("gate", "/api/v4/spot/trades", "spot_trades"),
    ("gate", "/api/v4/futures/usdt/trades", "futures_trades"),
    ("gate", "/api/v4/spot/tickers", "spot_tickers"),
    ("gate", "/api/v4/futures/usdt/tickers", "futures_tickers"),
]


def _sim_limit(exchange: str, counter: str) -> tuple[int, float]:
    if exchange == "okx":
        return OKX_SIM_LIMITS[counter], OKX_RULES.rest_window_s
    if exchange == "bitget":
        return BITGET_SIM_LIMITS[counter], BITGET_RULES.rest_window_s
    return GATE_RULES.rest_weight_limit, GATE_RULES.rest_window_s


def test_per_endpoint_pools_are_never_looser_than_the_simulator_counters() -> None:
    """Each simulator counter's paths share one of our pools, whose limit is at most the counter's and whose
    window at least the counter's: a client within our pools never overruns a counter."""
    pool_of_counter: dict[tuple[str, str], str] = {}
    for exchange, path, counter in _SIM_COUNTERS:
        rules = rules_for(exchange)
        assert path in {p for _, p in rules.endpoints()}, path
        costs = rules.costs("GET", path, {})
        key = rules.primary_pool(path)
        assert costs == {key: 1}
        assert pool_of_counter.setdefault((exchange, counter), key) == key, (exchange, path)
        spec, (limit, window_s) = rules.pool(key), _sim_limit(exchange, counter)
        assert spec.limit <= limit and spec.window_s >= window_s, (exchange, path, spec)


@pytest.mark.parametrize(("exchange", "sim_rules"), [("bybit", BYBIT_RULES), ("htx", HTX_RULES)])
def test_ip_pools_are_never_looser_than_the_simulator_window(exchange: str, sim_rules: Any) -> None:
    """Bybit and HTX count every request of the host in one window: so does our single ``ip`` pool."""
    rules: RateRules = rules_for(exchange)
    assert [p.key for p in rules.pools] == ["ip"]
    spec = rules.pool("ip")
    assert spec.limit <= sim_rules.rest_weight_limit and spec.window_s >= sim_rules.rest_window_s
    assert all(rules.costs("GET", path, {}) == {"ip": 1} for _, path in rules.endpoints())


@pytest.fixture
async def binance_sim() -> AsyncIterator[Simulator]:
    exchanges = ["binance", "binanceusdm", "binancecoinm"]
    async with Simulator(exchanges=exchanges, mode="synthetic", clock=FakeClock()) as sim:
        yield sim


async def _sim_weight(http: aiohttp.ClientSession, base: str) -> int:
    async with http.get(base + "/_sim/stats") as r:
        stats: dict[str, Any] = await r.json()
    return int(stats["rest"]["weight"])


_BINANCE_CASES = [
    ("binance", "/api/v3/ping", {}),
    ("binance", "/api/v3/time", {}),
    ("binance", "/api/v3/exchangeInfo", {}),
    *[("binance", "/api/v3/depth", {"symbol": "BTCUSDT", "limit": n}) for n in ("100", "101", "500", "501", "1000",
                                                                                  "1001", "5000")],
    ("binance", "/api/v3/depth", {"symbol": "BTCUSDT"}),
    ("binance", "/api/v3/ticker/24hr", {"symbol": "BTCUSDT"}),
    ("binance", "/api/v3/ticker/24hr", {}),
    ("binance", "/api/v3/ticker/24hr", {"symbols": '["BTCUSDT","ETHUSDT"]'}),
    ("binance", "/api/v3/ticker/bookTicker", {"symbol": "BTCUSDT"}),
    ("binance", "/api/v3/ticker/bookTicker", {}),
    ("binance", "/api/v3/ticker/price", {}),
    ("binance", "/api/v3/aggTrades", {"symbol": "BTCUSDT"}),
    ("binance", "/api/v3/trades", {"symbol": "BTCUSDT"}),
    ("binance", "/api/v3/historicalTrades", {"symbol": "BTCUSDT"}),
    ("binanceusdm", "/fapi/v1/exchangeInfo", {}),
    *[("binanceusdm", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": n}) for n in ("5", "50", "100", "500",
                                                                                       "1000")],
    ("binanceusdm", "/fapi/v1/depth", {"symbol": "BTCUSDT"}),
    ("binanceusdm", "/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"}),
    ("binanceusdm", "/fapi/v1/ticker/24hr", {}),
    ("binanceusdm", "/fapi/v1/ticker/bookTicker", {}),
    ("binanceusdm", "/fapi/v1/ticker/price", {"symbol": "BTCUSDT"}),
    ("binanceusdm", "/fapi/v1/premiumIndex", {}),
    ("binanceusdm", "/fapi/v1/aggTrades", {"symbol": "BTCUSDT"}),
    ("binanceusdm", "/fapi/v1/trades", {"symbol": "BTCUSDT"}),
    ("binancecoinm", "/dapi/v1/exchangeInfo", {}),
    ("binancecoinm", "/dapi/v1/depth", {"symbol": "BTCUSD_PERP", "limit": "1000"}),
    ("binancecoinm", "/dapi/v1/premiumIndex", {"symbol": "BTCUSD_PERP"}),
    ("binancecoinm", "/dapi/v1/aggTrades", {"symbol": "BTCUSD_PERP"}),
]  # fmt: skip


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_binance_weights_match_what_the_simulator_charges(binance_sim: Simulator) -> None:
    """Every Binance endpoint the simulator serves, at the ``limit`` boundaries: our weight equals the weight it
    charges (the docs' weight; never less, or a client keeping to our costs would earn 429s)."""
    eps = binance_sim.endpoints()
    mismatches = []
    async with aiohttp.ClientSession() as http:
        for exchange, path, params in _BINANCE_CASES:
            base = eps[exchange]["rest_url"]
            before = await _sim_weight(http, base)
            async with http.get(base + path, params=params) as r:
                assert r.status < 500, (path, r.status)
            charged = await _sim_weight(http, base) - before
            ours = rules_for(exchange).costs("GET", path, params)["weight"]
            if ours != charged:
                mismatches.append((exchange, path, params, ours, charged))
    assert mismatches == []


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_binance_sim_answers_read_as_pause_then_ban() -> None:
    async with (
        Simulator(
            exchanges=["binance"], mode="synthetic", clock=FakeClock(), rest_limits={"binance": (30, 60.0)}
        ) as sim,
        aiohttp.ClientSession() as http,
    ):
        base, rules = sim.endpoints()["binance"]["rest_url"], rules_for("binance")
        async with http.get(base + "/api/v3/time") as r:
            ok = rules.feedback(r.status, r.headers, path="/api/v3/time")
        assert (dict(ok.used), ok.pause_s, ok.ban_s) == ({"weight": 1}, None, None)
        params = {"symbol": "BTCUSDT", "limit": "5000"}  # weight 250 > 30
        async with http.get(base + "/api/v3/depth", params=params) as r:
            assert r.status == 429
            limited = rules.feedback(r.status, r.headers, path="/api/v3/depth")
            assert limited.pause_s == float(r.headers["Retry-After"]) and 1 <= limited.pause_s <= 60
        async with http.get(base + "/api/v3/time") as r:
            assert r.status == 418
            banned = rules.feedback(r.status, r.headers, path="/api/v3/time")
        assert banned.ban_s is not None and banned.ban_s >= 119 and banned.pause_s is None


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_bybit_gate_and_htx_sim_answers_read_as_counts_and_bans() -> None:
    limits = {"bybit": (2, 5.0), "htx": (1, 3.0)}
    async with (
        Simulator(
            exchanges=["bybit", "gate", "htx"], mode="synthetic", clock=FakeClock(), rest_limits=limits
        ) as sim,
        aiohttp.ClientSession() as http,
    ):
        eps = sim.endpoints()
        bybit = eps["bybit"]["rest_url"]
        async with http.get(bybit + "/v5/market/time") as r:
            fb = rules_for("bybit").feedback(r.status, r.headers, path="/v5/market/time")
            assert r.status == 200 and fb.used == {"ip": 1}
        async with http.get(bybit + "/v5/market/time") as r:
            pass
        async with http.get(bybit + "/v5/market/time") as r:
            fb = rules_for("bybit").feedback(r.status, r.headers, path="/v5/market/time")
        assert (r.status, fb.ban_s) == (403, 600.0)
        gate = eps["gate"]["rest_url"]
        async with http.get(gate + "/api/v4/spot/order_book", params={"currency_pair": "BTC_USDT"}) as r:
            fb = rules_for("gate").feedback(r.status, r.headers, path="/api/v4/spot/order_book")
        assert (r.status, dict(fb.used)) == (200, {"spot_book": 1})
        htx = eps["htx"]["rest_url"]
        for expected in (200, 429):
            async with http.get(htx + "/v1/common/timestamp") as r:
                fb = rules_for("htx").feedback(r.status, r.headers, path="/v1/common/timestamp")
            assert r.status == expected
        assert fb.pause_s is not None and 1 <= fb.pause_s <= 3


_CCXT_SYMBOLS = {
    "binance": "BTC/USDT",
    "binanceusdm": "BTC/USDT:USDT",
    "binancecoinm": "BTC/USD:BTC",
    "okx": "BTC/USDT",
    "bybit": "BTC/USDT",
    "gate": "BTC/USDT",
    "bitget": "BTC/USDT",
    "htx": "BTC/USDT",
}


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_every_path_ccxt_sends_for_public_data_and_health_checks_is_priced() -> None:
    """ccxt (default options) against the simulator: load_markets, order book, trades, ticker, time and status.
    Every path the simulator saw is in the exchange's table (priced as documented, not by the default)."""
    async with Simulator(mode="synthetic", clock=FakeClock()) as sim:
        eps = sim.endpoints()
        hosts: dict[str, str] = {}
        for ep in eps.values():
            hosts.update(ep["hosts"])
        for exchange, symbol in _CCXT_SYMBOLS.items():
            ex = point_at(getattr(ccxt_async, exchange)(), hosts)
            try:
                await ex.load_markets()
                for call in ("fetch_order_book", "fetch_trades", "fetch_ticker"):
                    await getattr(ex, call)(symbol)
                for call in ("fetch_time", "fetch_status"):
                    # not supported, or a health path the simulator does not serve (still counted)
                    with contextlib.suppress(ccxt_async.BaseError):
                        await getattr(ex, call)()
            finally:
                await ex.close()
        unpriced: dict[str, list[str]] = {}
        async with aiohttp.ClientSession() as http:
            for name, ep in eps.items():
                async with http.get(ep["rest_url"] + "/_sim/stats") as r:
                    stats: dict[str, Any] = await r.json()
                seen = stats["rest"]["by_path"]
                assert seen, name
                known = {p for _, p in rules_for(name).endpoints()}
                missing = [p for p in seen if p not in known]
                if missing:
                    unpriced[name] = missing
    assert unpriced == {}
