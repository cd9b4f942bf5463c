"""Exact REST rate limits, shared by many processes through Redis (see docs/ratelimit.md).

- :class:`Pool`: one documented limit (weight per sliding window); a request's costs name its pools.
- :class:`LocalLimiter`: the limiter of one process (injected clock).
- :class:`SharedLimiter`: the limiter of many processes through Redis, with a local fallback share.
"""

from cryptolink.ratelimit.line import LineFull
from cryptolink.ratelimit.local import LocalLimiter, LocalWindows
from cryptolink.ratelimit.pool import Attempt, Costs, Grant, Pool
from cryptolink.ratelimit.redis_store import RedisWindowStore
from cryptolink.ratelimit.shared import SharedLimiter
from cryptolink.ratelimit.stats import LimiterStats, PoolStats

__all__ = [
    "Attempt",
    "Costs",
    "Grant",
    "LimiterStats",
    "LineFull",
    "LocalLimiter",
    "LocalWindows",
    "Pool",
    "PoolStats",
    "RedisWindowStore",
    "SharedLimiter",
]
