"""Child-process entry: run the cryptolink simulator and print one JSON endpoint line per exchange.

``python -m bench.sim_proc --exchange binance --mode synthetic --speed 1`` (runs until terminated).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from cryptolink.simulator import SimConfig, Simulator, serve_forever
from cryptolink.simulator.runner import parse_rest_limit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exchange", action="append", default=[])
    ap.add_argument("--mode", default="replay")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--faults", default=None)
    ap.add_argument("--rest-limit", action="append", default=[], help="EXCHANGE=WEIGHT/SECONDS")
    ap.add_argument("--symbol", action="append", default=[], help="EXCHANGE:SYMBOL (exchange-native)")
    args = ap.parse_args()
    symbols: dict[str, tuple[str, ...]] = {}
    for item in args.symbol:
        exch, _, sym = item.partition(":")
        symbols[exch] = (*symbols.get(exch, ()), sym)
    limits = dict(parse_rest_limit(x) for x in args.rest_limit)
    config = SimConfig(rest_limits=limits, symbols=symbols) if symbols else SimConfig(rest_limits=limits)

    async def run() -> None:
        task = asyncio.ensure_future(
            serve_forever(
                Simulator(
                    exchanges=args.exchange or ["binance"],
                    mode=args.mode,
                    speed=args.speed,
                    faults=args.faults,
                    config=config,
                )
            )
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
