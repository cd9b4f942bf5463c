"""Outbound rate limits of one socket, in the injected clock's time.

- :class:`TokenBucket`: at most ``rate_per_s`` messages per second with a burst of ``burst`` (Binance spot
  closes connections that send more than 5 messages/s, USDⓈ-M 10/s: docs/protocols/binance.md "Limits").
- :class:`HourlyQuota`: at most ``limit`` subscribe/unsubscribe requests in any sliding hour (OKX 480 per hour
  per connection: docs/protocols/okx.md "Limits"). Its memory is bounded by ``limit``.
"""

from __future__ import annotations

from collections import deque

from cryptolink.clock import Clock

__all__ = ["HourlyQuota", "TokenBucket"]


class TokenBucket:
    """Token bucket; ``rate_per_s`` ``None`` disables it.

    Args:
        rate_per_s: refill rate, tokens per second.
        clock: time source.
        burst: bucket size (default: ``rate_per_s`` rounded down, at least 1).
    """

    def __init__(self, rate_per_s: float | None, clock: Clock, burst: float | None = None) -> None:
        self.rate = rate_per_s
        self._clock = clock
        self.capacity = burst if burst is not None else max(1.0, float(int(rate_per_s or 1)))
        self._tokens = self.capacity
        self._at = clock.monotonic()

    def _refill(self) -> None:
        assert self.rate is not None
        now = self._clock.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def try_acquire(self) -> bool:
        """Take a token if one is available now."""
        if self.rate is None:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def acquire(self) -> None:
        """Wait (clock time) until a token is available and take it."""
        if self.rate is None:
            return
        while not self.try_acquire():
            await self._clock.sleep((1.0 - self._tokens) / self.rate)


class HourlyQuota:
    """Sliding one-hour window of request times; ``limit`` ``None`` disables it."""

    def __init__(self, limit: int | None, clock: Clock, window_s: float = 3600.0) -> None:
        self.limit = limit
        self._clock = clock
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=limit or 1)

    def wait_s(self) -> float:
        """Seconds until one more request is allowed (0 if allowed now)."""
        if self.limit is None or len(self._times) < self.limit:
            return 0.0
        return max(0.0, self._times[0] + self.window_s - self._clock.monotonic())

    async def acquire(self) -> None:
        """Wait until a request is allowed and record it."""
        if self.limit is None:
            return
        while (w := self.wait_s()) > 0:
            await self._clock.sleep(w)
        self._times.append(self._clock.monotonic())
