"""Cutting a configuration's subscriptions into shards: the units of work workers claim (issue 10, scale-out).

A shard is one enabled exchange entry with a contiguous run of its symbols (config order) and every enabled
channel of the entry. Every worker given the same configuration computes the same shards in the same order
(:func:`plan_shards` reads nothing but the configuration and the adapters' declared connection limits), so a
shard id names the same work on every machine; :func:`config_fingerprint`, a digest of the resulting plan, lets
workers notice that they cut different shards (another configuration, or another code version whose adapters
declare other connection limits).

**Ids.** A shard's id is the entry's name when the entry fits one shard, else ``<entry>-s<k>`` with ``k`` from 0.
Entry names are ``[A-Za-z0-9][A-Za-z0-9_-]*`` (:mod:`cryptolink.config`), so an id is a valid manager entry name
and a valid NATS KV key token (no ``.``:
https://docs.nats.io/nats-concepts/subjects#characters-allowed-and-recommended-for-subject-names).
Two shards with one id (an entry named ``a-s0`` next to an entry ``a`` cut in two) are refused.

**Chunk size.** ``shard_symbols`` when given (``nats.cluster.shard_symbols``), else the most symbols ONE connection
of the entry's adapter carries: ``max_streams_per_connection // enabled channels``, and at most
``max_books_per_connection`` when the book channel is on (:class:`cryptolink.exchanges.base.ConnectionPolicy`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptolink.config import CryptolinkConfig, ExchangeConfig
from cryptolink.errors import ConfigError
from cryptolink.exchanges import get_adapter
from cryptolink.models import Channel

__all__ = ["FINGERPRINT_CHARS", "Shard", "config_fingerprint", "plan_shards", "symbols_per_connection"]

FINGERPRINT_CHARS = 16
"""Hex characters of :func:`config_fingerprint` (64 bits of SHA-256)."""


@dataclass(frozen=True, slots=True)
class Shard:
    """One unit of work.

    Attributes:
        id: stable id (see the module docstring); the manager entry name the shard runs under, so every event of
            the shard carries it as ``feed``.
        entry: the configuration entry's name.
        config: the entry's configuration with ``symbols`` cut to the shard's.
    """

    id: str
    entry: str
    config: ExchangeConfig

    @property
    def symbols(self) -> tuple[str, ...]:
        """The shard's symbols, in configuration order."""
        return tuple(self.config.symbols)


def symbols_per_connection(entry: ExchangeConfig) -> int:
    """The most symbols one connection of ``entry``'s adapter carries with the entry's channels (>= 1).

    Raises:
        ValueError: the entry's exchange/market has no adapter (a validated configuration never has one).
    """
    policy = get_adapter(entry.exchange, entry.market).policy
    channels = entry.channels.enabled_channels()
    fit = policy.max_streams_per_connection // max(1, len(channels))
    if Channel.BOOK in channels and policy.max_books_per_connection is not None:
        fit = min(fit, policy.max_books_per_connection)
    return max(1, fit)


def plan_shards(config: CryptolinkConfig, shard_symbols: int | None = None) -> list[Shard]:
    """Every shard of ``config``'s enabled entries, entries and symbols in configuration order.

    Args:
        config: the validated configuration.
        shard_symbols: symbols per shard (>= 1); ``None``: what one connection carries
            (:func:`symbols_per_connection`).

    Raises:
        ValueError: ``shard_symbols`` < 1.
        ConfigError: two shards would get one id.
    """
    if shard_symbols is not None and shard_symbols < 1:
        raise ValueError(f"shard_symbols must be >= 1, got {shard_symbols}")
    shards: list[Shard] = []
    for name, entry in config.enabled_exchanges().items():
        size = shard_symbols or symbols_per_connection(entry)
        symbols = list(entry.symbols)
        chunks = [symbols[i : i + size] for i in range(0, len(symbols), size)]
        for k, chunk in enumerate(chunks):
            shard_id = name if len(chunks) == 1 else f"{name}-s{k}"
            shards.append(Shard(shard_id, name, entry.model_copy(update={"symbols": chunk})))
    seen: dict[str, str] = {}
    for shard in shards:
        other = seen.setdefault(shard.id, shard.entry)
        if other != shard.entry:
            raise ConfigError(
                [("exchanges", f"entries {other!r} and {shard.entry!r} both make a shard named {shard.id!r}")]
            )
    return shards


def config_fingerprint(config: CryptolinkConfig, shards: Sequence[Shard] | None = None) -> str:
    """A short digest of the shard plan: each shard's id, entry, exchange, market, symbols (in order), enabled
    channels and testnet flag, in plan order, and ``nats.cluster.redundancy``.

    The plan is hashed, not the inputs that produce it: two code versions whose adapters declare different
    per-connection limits cut one configuration differently, and get different fingerprints. Two workers whose
    fingerprints differ run different shards (or count replicas differently); a worker reports such peers
    (:class:`cryptolink.cluster.worker.WorkerStatus`) and leaves them out of its fair share. Secrets, URLs and
    tunables never enter it.

    Args:
        config: the validated configuration.
        shards: its plan when already computed (:func:`plan_shards` with ``nats.cluster.shard_symbols``);
            ``None``: computed here.

    Returns:
        :data:`FINGERPRINT_CHARS` lowercase hex characters (a SHA-256 prefix of the canonical JSON).

    Raises:
        ConfigError: ``shards`` is ``None`` and two shards would get one id (:func:`plan_shards`).
    """
    cluster = config.nats.cluster if config.nats is not None else None
    if shards is None:
        shards = plan_shards(config, cluster.shard_symbols if cluster is not None else None)
    doc = {
        "shards": [
            {
                "id": shard.id,
                "entry": shard.entry,
                "exchange": shard.config.exchange,
                "market": shard.config.market.value,
                "symbols": list(shard.symbols),
                "channels": [c.value for c in shard.config.channels.enabled_channels()],
                "testnet": shard.config.testnet,
            }
            for shard in shards
        ],
        "redundancy": cluster.redundancy if cluster is not None else 1,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS]
