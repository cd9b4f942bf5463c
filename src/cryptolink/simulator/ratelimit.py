"""REST rate-limit models the simulator enforces (sans-I/O, clock injected).

- :class:`WeightLimiter`: Binance REQUEST_WEIGHT (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits
  and "IP Limits" of https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info): fixed
  windows (default 1 min) of summed request weight; header ``X-MBX-USED-WEIGHT-1M`` reports the used weight;
  over the limit the answer is HTTP 429 with ``Retry-After`` (seconds to the window end); a request that arrives
  while a 429 is still in force earns HTTP 418 and a ban (``ban_s``, doubling on each new ban), again with
  ``Retry-After``.
- :class:`WindowCounter`: OKX per-endpoint request counts per 2 s window
  (https://www.okx.com/docs-v5/en/#overview-rate-limits): over the limit => 429 with body
  ``{"code":"50011","msg":"Too Many Requests"}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cryptolink.clock import Clock

__all__ = ["Verdict", "WeightLimiter", "WindowCounter"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one request: HTTP ``status`` (200, 429 or 418), ``used`` weight/count in the current
    window and
    ``retry_after_s`` (whole seconds, 0 when allowed)."""

    status: int
    used: int
    retry_after_s: int


class WeightLimiter:
    """Summed weight per fixed window with 429 then 418 escalation.

    Args:
        limit: weight allowed per window.
        window_s: window length in seconds (windows are aligned to multiples of it on ``clock.monotonic()``).
        ban_s: first ban length in seconds; each further ban doubles it.
        clock: time source.
    """

    def __init__(self, limit: int, window_s: float, ban_s: float, clock: Clock) -> None:
        self.limit = limit
        self.window_s = window_s
        self.ban_s = ban_s
        self._clock = clock
        self._window_start = -math.inf
        self._used = 0
        self._limited_until = -math.inf  # 429 in force until (requests before it => 418)
        self._banned_until = -math.inf
        self._bans = 0
        self.rejected_429 = 0
        self.rejected_418 = 0

    def _roll(self, now: float) -> None:
        start = math.floor(now / self.window_s) * self.window_s
        if start != self._window_start:
            self._window_start = start
            self._used = 0

    def charge(self, weight: int) -> Verdict:
        """Account one request of ``weight`` now and return what to answer."""
        now = self._clock.monotonic()
        self._roll(now)
        if now < self._banned_until:
            self.rejected_418 += 1
            return Verdict(418, self._used, max(1, math.ceil(self._banned_until - now)))
        if now < self._limited_until:
            self._bans += 1
            self._banned_until = now + self.ban_s * (2 ** (self._bans - 1))
            self.rejected_418 += 1
            return Verdict(418, self._used, max(1, math.ceil(self._banned_until - now)))
        if self._used + weight > self.limit:
            self._limited_until = self._window_start + self.window_s
            self.rejected_429 += 1
            return Verdict(429, self._used, max(1, math.ceil(self._limited_until - now)))
        self._used += weight
        return Verdict(200, self._used, 0)

    @property
    def used(self) -> int:
        """Weight used in the current window."""
        self._roll(self._clock.monotonic())
        return self._used


class WindowCounter:
    """Request counts per key (endpoint) per fixed window.

    Args:
        limits: key -> requests allowed per window; keys not listed are unlimited.
        window_s: window length in seconds.
        clock: time source.
    """

    def __init__(self, limits: dict[str, int], window_s: float, clock: Clock) -> None:
        self.limits = dict(limits)
        self.window_s = window_s
        self._clock = clock
        self._counts: dict[str, tuple[float, int]] = {}
        self.rejected = 0

    def hit(self, key: str) -> Verdict:
        """Count one request on ``key``; 429 when the window's limit is already reached."""
        limit = self.limits.get(key)
        if limit is None:
            return Verdict(200, 0, 0)
        now = self._clock.monotonic()
        start = math.floor(now / self.window_s) * self.window_s
        ws, n = self._counts.get(key, (start, 0))
        if ws != start:
            n = 0
        if n >= limit:
            self.rejected += 1
            self._counts[key] = (start, n)
            return Verdict(429, n, max(1, math.ceil(start + self.window_s - now)))
        self._counts[key] = (start, n + 1)
        return Verdict(200, n + 1, 0)
