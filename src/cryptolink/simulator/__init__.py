"""The cryptolink exchange simulator: Binance spot, Binance USDⓈ-M and OKX on 127.0.0.1 (WS + REST).

Independent of the client side by design (imports only :mod:`cryptolink.recordings` and
:mod:`cryptolink.clock`).
Modules: :mod:`.runner` (``Simulator``, ``run_simulator``), :mod:`.server` (connections, observability),
:mod:`.binance`, :mod:`.okx` (protocols), :mod:`.market` (replay/synthetic sources), :mod:`.faults`,
:mod:`.ratelimit`, :mod:`.config`.
"""

from cryptolink.simulator.config import (
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
    "run_simulator",
    "serve_forever",
]
