"""Shards: chunks sized by each adapter's per-connection limits (or ``shard_symbols``), stable ids valid as entry
names and KV tokens, determinism across workers, and a fingerprint of the resulting plan: it follows exactly what
defines the shards, including adapters' connection limits (another code version), and nothing else."""

from __future__ import annotations

import re
from typing import Any

import pytest

import cryptolink.cluster.shards as shards_mod
from cryptolink.cluster.shards import config_fingerprint, plan_shards, symbols_per_connection
from cryptolink.config import ConfigError, CryptolinkConfig, ExchangeConfig

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def syms(n: int, quote: str = "USDT", settle: str = "") -> list[str]:
    return [f"C{i}/{quote}{settle}" for i in range(n)]


def config(exchanges: dict[str, Any], **nats: Any) -> CryptolinkConfig:
    data: dict[str, Any] = {"exchanges": exchanges}
    if nats:
        data["nats"] = {"cluster": nats}
    return CryptolinkConfig.from_dict(data)


def test_chunks_follow_each_adapters_connection_limits() -> None:
    cfg = config(
        {
            # OKX: 240 streams and at most 29 books per connection -> 29 symbols with trades + book
            "okx": {"exchange": "okx", "symbols": syms(60), "channels": ["trades", "book"]},
            # OKX without books: 240 // 2 = 120 -> one shard
            "okx-nobook": {"exchange": "okx", "symbols": syms(60), "channels": ["trades", "ticker"]},
            # HTX perpetual: one book per connection -> one symbol per shard
            "htx": {
                "exchange": "htx",
                "market": "perpetual",
                "symbols": syms(3, settle=":USDT"),
                "channels": ["book"],
            },
            # Bitget: 50 streams per connection, 3 channels -> 16 symbols
            "bitget": {"exchange": "bitget", "symbols": syms(40)},
        }
    )
    shards = plan_shards(cfg)
    by_entry: dict[str, list[tuple[str, int]]] = {}
    for s in shards:
        by_entry.setdefault(s.entry, []).append((s.id, len(s.symbols)))
    assert by_entry["okx"] == [("okx-s0", 29), ("okx-s1", 29), ("okx-s2", 2)]
    assert by_entry["okx-nobook"] == [("okx-nobook", 60)]
    assert by_entry["htx"] == [("htx-s0", 1), ("htx-s1", 1), ("htx-s2", 1)]
    assert by_entry["bitget"] == [("bitget-s0", 16), ("bitget-s1", 16), ("bitget-s2", 8)]
    assert symbols_per_connection(cfg.exchanges["okx"]) == 29
    for s in shards:
        assert ID_RE.match(s.id) and "." not in s.id
        # the shard's config is the entry's with its symbols cut, every other field kept
        entry = cfg.exchanges[s.entry]
        assert s.config.channels == entry.channels and s.config.exchange == entry.exchange
    # every symbol in exactly one shard, in config order
    for name, entry in cfg.exchanges.items():
        joined = [sym for s in shards if s.entry == name for sym in s.symbols]
        assert joined == list(entry.symbols)


def test_shard_symbols_overrides_and_disabled_entries_are_left_out() -> None:
    cfg = config(
        {
            "binance": {"symbols": syms(5)},
            "off": {"exchange": "okx", "symbols": syms(2), "enabled": False},
        },
        shard_symbols=2,
    )
    shards = plan_shards(cfg, cfg.nats.cluster.shard_symbols if cfg.nats else None)
    assert [(s.id, s.symbols) for s in shards] == [
        ("binance-s0", ("C0/USDT", "C1/USDT")),
        ("binance-s1", ("C2/USDT", "C3/USDT")),
        ("binance-s2", ("C4/USDT",)),
    ]
    # binance fits 1024 // 3 symbols on one connection: without shard_symbols the entry is one shard
    assert [s.id for s in plan_shards(cfg)] == ["binance"]
    with pytest.raises(ValueError):
        plan_shards(cfg, 0)


def test_every_worker_computes_the_same_shards() -> None:
    symbols = ", ".join(syms(40))
    yaml_text = (
        "exchanges:\n"
        f"  okx-a: {{exchange: okx, symbols: [{symbols}], channels: [trades, book]}}\n"
        "  binance: {symbols: [BTC/USDT, ETH/USDT]}\n"
    )
    a = plan_shards(CryptolinkConfig.from_yaml_text(yaml_text))
    b = plan_shards(CryptolinkConfig.from_yaml_text(yaml_text))
    assert [(s.id, s.symbols) for s in a] == [(s.id, s.symbols) for s in b]
    assert [s.id for s in a] == ["okx-a-s0", "okx-a-s1", "binance"]


def test_two_shards_with_one_id_are_refused() -> None:
    cfg = config(
        {"a": {"exchange": "binance", "symbols": syms(3)}, "a-s0": {"exchange": "okx", "symbols": syms(1)}}
    )
    with pytest.raises(ConfigError, match="both make a shard named 'a-s0'"):
        plan_shards(cfg, 2)


def test_fingerprint_follows_the_shard_defining_parts_only() -> None:
    base = {"binance": {"symbols": ["BTC/USDT", "ETH/USDT"]}}
    fp = config_fingerprint(config(base))
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert config_fingerprint(config(base)) == fp
    changed: list[dict[str, Any]] = [
        {"binance": {"symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT"]}},  # a symbol more
        {"binance": {"symbols": ["ETH/USDT", "BTC/USDT"]}},  # order (shard cuts move)
        {"binance": {"symbols": ["BTC/USDT", "ETH/USDT"], "channels": ["trades"]}},
        {"bn": {"exchange": "binance", "symbols": ["BTC/USDT", "ETH/USDT"]}},  # entry name = shard ids
    ]
    for exchanges in changed:
        assert config_fingerprint(config(exchanges)) != fp, exchanges
    assert config_fingerprint(config(base, shard_symbols=1)) != fp
    assert config_fingerprint(config(base, redundancy=2)) != fp
    same: list[dict[str, Any]] = [
        {"binance": {"symbols": ["BTC/USDT", "ETH/USDT"], "ws_url": "ws://127.0.0.1:9"}},
        {"binance": {"symbols": ["BTC/USDT", "ETH/USDT"], "api_key": "k" * 20, "api_secret": "s" * 20}},
        {"binance": {"symbols": ["BTC/USDT", "ETH/USDT"]},
         "x": {"exchange": "okx", "symbols": ["A/USDT"], "enabled": False}},
    ]  # fmt: skip
    for exchanges in same:
        assert config_fingerprint(config(exchanges)) == fp, exchanges
    assert config_fingerprint(config(base, lease_ttl_s=30)) == fp


def test_fingerprint_hashes_the_plan_not_the_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config({"okx": {"exchange": "okx", "symbols": syms(60), "channels": ["trades", "book"]}})
    fp = config_fingerprint(cfg)
    assert [len(s.symbols) for s in plan_shards(cfg)] == [29, 29, 2]
    assert config_fingerprint(cfg, plan_shards(cfg)) == fp  # the plan given or computed: one digest

    # another code version whose OKX adapter declares another per-connection limit: one configuration, other
    # shards, so another fingerprint (workers of both versions must not share leases)
    def thirty(entry: ExchangeConfig) -> int:
        return 30

    monkeypatch.setattr(shards_mod, "symbols_per_connection", thirty)
    assert [len(s.symbols) for s in plan_shards(cfg)] == [30, 30]
    assert config_fingerprint(cfg) != fp
    monkeypatch.undo()

    # different inputs that cut the same shards give the same fingerprint
    assert (
        config_fingerprint(
            config(
                {"okx": {"exchange": "okx", "symbols": syms(60), "channels": ["trades", "book"]}},
                shard_symbols=29,
            )
        )
        == fp
    )
    assert (
        config_fingerprint(
            config(
                {"okx": {"exchange": "okx", "symbols": syms(60), "channels": ["trades", "book"]}},
                shard_symbols=28,
            )
        )
        != fp
    )
