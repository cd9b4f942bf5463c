"""REST GETs of one exchange host, shared by book snapshots and trade backfills: one budget for both.

A :class:`RestClient` serves every feed of one (exchange, REST host) in a manager. A request waits until

- the weight it costs fits in the host's budget: ``share`` (default 0.5) of the adapter's documented limit
  (``ExchangeAdapter.rest_limit``: Binance spot 6000 weight per minute, USDⓈ-M 2400, OKX 20 requests per 2 s
  for the endpoints used here), over a sliding window, so other users of the same IP keep room;
- no 429/418 answer's ``Retry-After`` is in force (every request of the host pauses for it; 60 s when the
  answer names no delay);
- fewer than ``max_concurrent`` requests are in flight.

Background requests (trade backfills) may fill only ``background_share`` (default 0.5) of the budget, so book
snapshots, which a live book waits for, always find room: a long backfill after an outage never delays a
resync by more than one request.

So a collector resyncing hundreds of books after an outage never ends in a 429/418 ban. Errors are typed
(:class:`RestError` with the HTTP status and the server's ``Retry-After``). The exact, cross-process limits
fed by the exchanges' weight headers belong to the REST manager (a later piece); this client only keeps the
snapshots and backfills of one process polite.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import aiohttp

from cryptolink.clock import Clock
from cryptolink.errors import CryptolinkError
from cryptolink.exchanges.base import RestRateLimit, RestRequest

__all__ = ["RestClient", "RestError", "RestStats"]

_log = logging.getLogger(__name__)


class RestError(CryptolinkError):
    """A REST request failed: HTTP status (``None`` for a transport error or timeout), and the delay the
    server asked for (429/418 ``Retry-After``, s)."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RestStats:
    """One client's counters.

    Attributes:
        key: ``"<exchange> <base URL>"``.
        requests: requests sent; weight: their summed weight.
        errors: requests that failed (any reason); rate_limited: 429/418 answers.
        budget: weight allowed per ``window_s`` (``None``: no budget); in_window: weight used in the window now.
        paused_for_s: seconds left of a ``Retry-After`` pause (0 when none).
        waiting: requests waiting for the budget, the pause or a slot.
    """

    key: str
    requests: int
    weight: int
    errors: int
    rate_limited: int
    budget: int | None
    window_s: float | None
    in_window: int
    paused_for_s: float
    waiting: int


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class RestClient:
    """See the module docstring.

    Args:
        key: name in logs and stats.
        base_url: the REST base (``https://api.binance.com``); requests' paths are appended.
        http: the aiohttp session (owned by the caller); ``None``: every request fails (no network).
        clock: time source of the budget and pauses.
        limit: the documented limit; ``None``: no budget.
        share: fraction of ``limit`` this process uses (0 < share <= 1).
        max_concurrent: requests in flight at once.
        timeout_s: total timeout of one request, s.
        background_share: fraction of the budget ``background`` requests may fill (0 < x <= 1).
    """

    def __init__(
        self,
        key: str,
        base_url: str,
        http: aiohttp.ClientSession | None,
        clock: Clock,
        limit: RestRateLimit | None,
        *,
        share: float = 0.5,
        max_concurrent: int = 2,
        timeout_s: float = 10.0,
        background_share: float = 0.5,
    ) -> None:
        if not 0 < share <= 1 or max_concurrent < 1 or not 0 < background_share <= 1:
            raise ValueError("need 0 < share <= 1, 0 < background_share <= 1 and max_concurrent >= 1")
        self.key = key
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._clock = clock
        self.limit = limit
        self.budget = max(1, int(limit.weight * share)) if limit is not None else None
        self.background_budget = (
            max(1, int(self.budget * background_share)) if self.budget is not None else None
        )
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_concurrent)
        self._spent: deque[tuple[float, int]] = deque()
        self._paused_until = 0.0
        self.requests = 0
        self.weight = 0
        self.errors = 0
        self.rate_limited = 0
        self._waiting = 0

    def stats(self) -> RestStats:
        """An immutable snapshot."""
        now = self._clock.monotonic()
        return RestStats(
            key=self.key,
            requests=self.requests,
            weight=self.weight,
            errors=self.errors,
            rate_limited=self.rate_limited,
            budget=self.budget,
            window_s=self.limit.window_s if self.limit is not None else None,
            in_window=self._in_window(now),
            paused_for_s=max(0.0, self._paused_until - now),
            waiting=self._waiting,
        )

    def _in_window(self, now: float) -> int:
        if self.limit is None:
            return 0
        horizon = now - self.limit.window_s
        spent = self._spent
        while spent and spent[0][0] <= horizon:
            spent.popleft()
        return sum(w for _, w in spent)

    async def _wait_turn(self, weight: int, background: bool) -> None:
        while True:
            now = self._clock.monotonic()
            if now < self._paused_until:
                await self._clock.sleep(self._paused_until - now)
                continue
            if self.budget is None or self.limit is None or self.background_budget is None:
                return
            budget = self.background_budget if background else self.budget
            weight = min(weight, budget)  # a request heavier than the budget still goes, alone
            if self._in_window(now) + weight <= budget:
                self._spent.append((now, weight))
                return
            await self._clock.sleep(max(0.001, self._spent[0][0] + self.limit.window_s - now))

    def pause(self, seconds: float) -> None:
        """Hold every request of this host for ``seconds`` (a 429/418 answer's ``Retry-After``)."""
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)

    async def get(
        self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
    ) -> bytes:
        """Send ``request`` when the budget, a pause and the concurrency bound allow; return the body.
        ``timeout_s`` overrides the client's timeout for this request; ``background`` requests (backfills) use
        at most ``background_share`` of the budget.

        Raises:
            RestError: a transport error, a timeout, or a status other than 200 (429/418, and the limit's
                ``ban_statuses`` such as Bybit's 403, also pause every request of this host for their
                ``Retry-After``, or 60 s / the limit's ``ban_pause_s`` without one).
        """
        self._waiting += 1
        try:
            await self._wait_turn(request.weight, background)
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self._send(request, self._timeout_s if timeout_s is None else timeout_s)
        finally:
            self._slots.release()

    async def _send(self, request: RestRequest, timeout_s: float) -> bytes:
        url = self.base_url + request.path
        self.requests += 1
        self.weight += request.weight
        if self._http is None:
            self.errors += 1
            raise RestError(f"GET {url}: no HTTP session")
        try:
            async with self._http.get(
                url, params=request.params, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                body = await resp.read()
                banned = self.limit is not None and resp.status in self.limit.ban_statuses
                if resp.status in (418, 429) or banned:
                    asked = _retry_after(resp.headers.get("Retry-After"))
                    default = self.limit.ban_pause_s if banned and self.limit is not None else 60.0
                    wait = default if asked is None else asked
                    self.rate_limited += 1
                    self.errors += 1
                    self.pause(wait)
                    _log.warning(
                        "%s: HTTP %d from %s; pausing every request to this host for %.0f s",
                        self.key,
                        resp.status,
                        request.path,
                        wait,
                    )
                    raise RestError(f"HTTP {resp.status} from {url}", resp.status, wait)
                if resp.status != 200:
                    self.errors += 1
                    raise RestError(f"HTTP {resp.status} from {url}: {body[:200]!r}", resp.status)
                return body
        except TimeoutError as exc:
            self.errors += 1
            raise RestError(f"GET {url}: no answer within {timeout_s:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            self.errors += 1
            raise RestError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
