"""Child-process entry of the shared-budget benchmark: one process saturating one Binance member through a
``RestManager`` whose budget is shared through Redis.

``python -m bench.rest_worker --hosts JSON --redis URL --prefix P --limit W/S --start-at EPOCH --duration S``

Waits until wall time ``start-at``, then keeps ``--concurrency`` calls in flight (a mix of weights: time 1,
ticker 2, depth limit=100 5) until ``duration`` has passed, and prints one JSON line with its counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from cryptolink.config import RestConfig
from cryptolink.rest.manager import RestManager

CALLS: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...] = (
    ("fetch_time", (), {}),
    ("fetch_ticker", ("BTC/USDT",), {}),
    ("fetch_order_book", ("BTC/USDT",), {"limit": 100}),
)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    weight, window = args.limit.split("/")
    config = RestConfig.model_validate(
        {
            "members": {
                "a": {
                    "exchange": "binance",
                    "hosts": json.loads(args.hosts),
                    "options": {"fetchMarkets": {"types": ["spot"]}},
                    "max_concurrent": args.concurrency,
                    "timeout_s": 120,  # a saturated budget makes a request wait up to one window (60 s)
                }
            },
            "limits": {
                "redis_url": args.redis,
                "prefix": args.prefix,
                "fallback_share": 0.25,
                "overrides": {"binance": {"weight": [int(weight), float(window)]}},
            },
            "health": {"check_at_start": False, "interval_s": 3600},
        }
    )
    counts = {"ok": 0, "failed": 0}
    errors: dict[str, int] = {}
    async with RestManager(config) as rm:
        await rm.call("a", "load_markets")
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
        end = time.monotonic() + args.duration
        n = 0

        async def loop() -> None:
            nonlocal n
            while time.monotonic() < end:
                method, a, kw = CALLS[n % len(CALLS)]
                n += 1
                try:
                    await rm.call("a", method, *a, **kw)
                    counts["ok"] += 1
                except Exception as exc:  # counted and reported
                    counts["failed"] += 1
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

        await asyncio.gather(*(loop() for _ in range(args.concurrency)))
        budget = rm.stats().budgets[0]
    return {**counts, "errors": errors, "mode": budget.limiter.mode, "grants": budget.limiter.grants}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--limit", required=True, help="WEIGHT/SECONDS as the simulator enforces it")
    ap.add_argument("--start-at", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
