"""The cryptolink exchange simulator: Binance spot, USDⓈ-M and COIN-M and OKX on 127.0.0.1 (WS + REST), each
speaking the exchange's real protocol so third-party clients (ccxt, ccxt.pro) connect by host replacement.

Independent of the client side by design (imports only :mod:`cryptolink.recordings` and
:mod:`cryptolink.clock`).
Modules: :mod:`.registry` (one ``ServerSpec`` per exchange, registered by its protocol module),
:mod:`.runner` (``Simulator``, ``run_simulator``), :mod:`.server` (connections, observability, ``/_sim/stats``),
:mod:`.binance`, :mod:`.okx` (protocols), :mod:`.market` (replay/synthetic sources), :mod:`.faults`,
:mod:`.ratelimit`, :mod:`.config`.
"""

from cryptolink.simulator import registry
from cryptolink.simulator.config import (
    BINANCE_COINM_RULES,
    BINANCE_SPOT_RULES,
    BINANCE_USDM_RULES,
    OKX_RULES,
    ExchangeRules,
    SimConfig,
)
from cryptolink.simulator.faults import Fault, FaultSpecError, RandomFaults, parse_spec
from cryptolink.simulator.runner import PORT_OFFSETS, Simulator, run_simulator, serve_forever
from cryptolink.simulator.server import ConnectionStats, StreamStats

__all__ = [
    "BINANCE_COINM_RULES",
    "BINANCE_SPOT_RULES",
    "BINANCE_USDM_RULES",
    "OKX_RULES",
    "PORT_OFFSETS",
    "ConnectionStats",
    "ExchangeRules",
    "Fault",
    "FaultSpecError",
    "RandomFaults",
    "SimConfig",
    "Simulator",
    "StreamStats",
    "parse_spec",
    "registry",
    "run_simulator",
    "serve_forever",
]
