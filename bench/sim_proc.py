"""Child-process entry: run the cryptolink simulator and print one JSON endpoint line per exchange.

``python -m bench.sim_proc --exchange binance --mode synthetic --speed 1`` (runs until terminated).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from cryptolink.simulator import Simulator, serve_forever


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exchange", action="append", default=[])
    ap.add_argument("--mode", default="replay")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--faults", default=None)
    args = ap.parse_args()

    async def run() -> None:
        task = asyncio.ensure_future(
            serve_forever(
                Simulator(
                    exchanges=args.exchange or ["binance"],
                    mode=args.mode,
                    speed=args.speed,
                    faults=args.faults,
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
