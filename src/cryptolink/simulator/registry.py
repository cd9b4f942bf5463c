"""The simulator's exchange registry: one :class:`ServerSpec` per simulated exchange, registered by its protocol
module.

A protocol module (``binance.py``, ``okx.py``...) defines its :class:`~cryptolink.simulator.server.ExchangeServer`
subclasses and calls :func:`register` once per exchange at import time. Everything that used to list the
exchanges by hand derives from here: the runner's ``SERVERS`` and ``PORT_OFFSETS``, ``faults`` exchange
validation, ``SimConfig``'s default rules and symbols, the ``cryptolink simulate`` exchange choices.

Discovery is one import list, :data:`PROTOCOL_MODULES` (not a package scan, so a half-written module elsewhere in
the package cannot break the simulator): a new exchange is one new module that calls :func:`register`, plus its
name in that list. The simulator still imports nothing of the client (only ``cryptolink.simulator.*``,
``cryptolink.recordings`` and ``cryptolink.clock``).

Example (what ``binance.py`` does)::

    register(ServerSpec("binance", BinanceServer, port_offset=0, rules=BINANCE_SPOT_RULES,
                        symbols=("BTCUSDT", "ETHUSDT"), replay_kinds=("spot",)))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptolink.simulator.config import ExchangeRules
    from cryptolink.simulator.server import ExchangeServer

__all__ = ["PROTOCOL_MODULES", "ServerSpec", "get", "hosts_of", "names", "register", "specs"]

#: Modules imported by :func:`specs` so that they register their servers. One line per protocol module.
PROTOCOL_MODULES: tuple[str, ...] = (
    "cryptolink.simulator.binance",
    "cryptolink.simulator.okx",
    "cryptolink.simulator.bybit",
    "cryptolink.simulator.bitget",
    "cryptolink.simulator.gate",
    "cryptolink.simulator.htx",
)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One simulated exchange.

    Args:
        name: ccxt exchange id (``binance``, ``binanceusdm``, ``binancecoinm``, ``okx``).
        server: the server class (its ``hosts`` class attribute lists the real base URLs it stands for).
        port_offset: with ``Simulator(port=N)`` the exchange listens on ``N + port_offset``; stable across releases
            (binance 0, binanceusdm 1, okx 2, binancecoinm 3).
        rules: default :class:`~cryptolink.simulator.config.ExchangeRules` (documented protocol timings/limits).
        symbols: default exchange-native symbols served.
        replay_kinds: market kinds of :data:`~cryptolink.simulator.market.REPLAY_FILES` /
            ``SimConfig.replay_files`` keys this exchange replays (``spot``, ``usdm``, ``coinm``); empty when it
            replays only its own shipped recording (OKX).
    """

    name: str
    server: type[ExchangeServer]
    port_offset: int
    rules: ExchangeRules
    symbols: tuple[str, ...]
    replay_kinds: tuple[str, ...] = ()


_SPECS: dict[str, ServerSpec] = {}
_loaded = False


def register(spec: ServerSpec) -> None:
    """Add ``spec`` (called by protocol modules at import time; re-registering the same class is a no-op).

    Raises:
        ValueError: the name or the port offset is already taken by another server.
    """
    old = _SPECS.get(spec.name)
    if old is not None:
        if old.server is spec.server:
            return
        raise ValueError(f"simulator exchange {spec.name!r} is already registered by {old.server.__name__}")
    for other in _SPECS.values():
        if other.port_offset == spec.port_offset:
            raise ValueError(f"port offset {spec.port_offset} of {spec.name!r} is taken by {other.name!r}")
    _SPECS[spec.name] = spec


def specs() -> dict[str, ServerSpec]:
    """Every registered exchange by name, in port-offset order (imports :data:`PROTOCOL_MODULES` first)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in PROTOCOL_MODULES:
            importlib.import_module(module)
    return dict(sorted(_SPECS.items(), key=lambda kv: kv[1].port_offset))


def names() -> tuple[str, ...]:
    """Registered exchange ids in port-offset order."""
    return tuple(specs())


def get(name: str) -> ServerSpec:
    """The spec of ``name``.

    Raises:
        ValueError: not a registered exchange (the message lists the known ones).
    """
    found = specs().get(name)
    if found is None:
        raise ValueError(f"unknown simulator exchange {name!r}; known: {', '.join(names())}")
    return found


def hosts_of(name: str, rest_url: str, ws_url: str) -> dict[str, str]:
    """``{real base URL: local base URL}`` for exchange ``name``: ``https://``/``http://`` hosts map to
    ``rest_url``, ``wss://``/``ws://`` hosts to ``ws_url``, each followed by the server's ``host_paths`` prefix for
    that host if it has one (paths are the real ones, so a client is pointed at the simulator by replacing these
    prefixes only)."""
    server = get(name).server
    out: dict[str, str] = {}
    for host in server.hosts:
        base = ws_url if host.startswith(("wss://", "ws://")) else rest_url
        out[host] = base + server.host_paths.get(host, "")
    return out
