"""A second process for the cross-process test: ``python -m tests.ratelimit.worker PREFIX LIMIT WINDOW_S COUNT SEED``.

Prints ``ready``, waits for a line on stdin, then takes ``COUNT`` grants of weight 1-3 from pool ``p`` and
prints each as ``<at_us> <weight>``, then ``done``.
"""

from __future__ import annotations

import asyncio
import random
import sys

from cryptolink.ratelimit import Pool, SharedLimiter
from tests.ratelimit.helpers import REDIS_URL


async def main(prefix: str, limit: int, window_s: float, count: int, seed: int) -> None:
    rng = random.Random(seed)
    async with SharedLimiter([Pool("p", limit, window_s)], redis_url=REDIS_URL, prefix=prefix) as limiter:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for _ in range(count):
            grant = await limiter.acquire({"p": rng.randint(1, 3)})
            if grant.source != "redis":
                raise SystemExit(f"granted by {grant.source}: {limiter.stats().last_error}")
            print(grant.at_us, grant.weights["p"], flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    prefix, limit, window_s, count, seed = sys.argv[1:6]
    asyncio.run(main(prefix, int(limit), float(window_s), int(count), int(seed)))
