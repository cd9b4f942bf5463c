"""REST GETs of one exchange host, for book snapshots, trade backfills and instrument lists, within the exchange's
rate budget.

A :class:`RestClient` serves every feed of one (exchange, REST host) in a manager. A request

1. takes one of ``max_concurrent`` concurrency slots (background requests may hold at most half of them, so
   with two slots or more backfills never keep book snapshots from a slot);
2. then waits for its grant from the :class:`~cryptolink.rest.budget.RateBudget` (the exchange's documented
   pools on this IP, shared with the REST manager and, through Redis, with every process): book snapshots with
   priority 0, trade backfills (``background=True``) with priority 10 and also from the background pools, so
   they can never eat the snapshots' budget;
3. is sent right after its grant (the slot is already held: the grant-to-arrival jitter stays small, which the
   budget's window margin must cover);
4. and its answer, whatever the status, is fed back to the budget: 200s carry the exchange's used-weight headers
   (they correct the shared count), 429/418 and the exchange's other ban statuses pause or ban the pools for
   every process sharing the budget.

So a collector resyncing hundreds of books after an outage never ends in a 429/418 ban. Without a budget
(``budget=None``: tests, or an exchange without documented rules) nothing is limited, but a 429/418 answer still
pauses every request of this client for its ``Retry-After`` (60 s when the answer names none; at most
3 days).

A request whose cost can never be granted (a weight above a pool's limit: a limit, share or override too small)
is a configuration error, raised at once as :class:`RestError` (``status`` ``None``) and counted in ``refused``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from cryptolink.clock import Clock
from cryptolink.errors import CryptolinkError
from cryptolink.exchanges.base import RestRequest
from cryptolink.ratelimit import Grant, LineFull
from cryptolink.rest.budget import RateBudget
from cryptolink.rest.costs import MAX_RETRY_AFTER_S

__all__ = [
    "BACKGROUND_PRIORITY",
    "DEFAULT_PAUSE_S",
    "SNAPSHOT_PRIORITY",
    "RestClient",
    "RestError",
    "RestStats",
]

_log = logging.getLogger(__name__)

SNAPSHOT_PRIORITY = 0
"""Wait-line priority of foreground requests (book snapshots, instrument lists): served first."""

BACKGROUND_PRIORITY = 10
"""Wait-line priority of background requests (trade backfills)."""

DEFAULT_PAUSE_S = 60.0
"""Without a budget: the pause of a 429/418 answer that carries no usable ``Retry-After``, s."""


class RestError(CryptolinkError):
    """A REST request failed: HTTP status (``None`` for a transport error, a timeout, or a request refused before
    sending), and the delay the server asked for (429/418 ``Retry-After``, s)."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RestStats:
    """One client's counters.

    Attributes:
        key: ``"<exchange> <base URL>"``.
        requests: requests sent; weight: their summed weight in the budget's main pool, or in their own pool for
            a request outside it (OKX's per-endpoint pools; without a budget: the requests' own ``weight``);
            background: how many of them were background requests (backfills).
        errors: requests that failed (any reason, refused ones included); rate_limited: answers that paused or
            banned (429, 418, the exchange's other ban statuses); refused: requests refused before sending
            (a cost above a pool's limit, or too many waiting).
        budget: the main pool's limit per ``window_s`` (``None``: no budget); window_s: the main pool's window,
            s (documented window plus margin); in_window: weight this process counts in that window now.
        paused_for_s: seconds left of a pause or ban this process knows of (0 when none).
        waiting: requests waiting for a slot, the budget or a pause.
        mode: the budget's limiter mode (``local``, ``redis``, ``fallback``; ``None``: no budget).
        pool: the main pool's name (``"binance:default:weight"``; ``None``: no budget).
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
    background: int = 0
    refused: int = 0
    mode: str | None = None
    pool: str | None = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


class RestClient:
    """See the module docstring.

    Args:
        key: name in logs and stats.
        base_url: the REST base (``https://api.binance.com``); requests' paths are appended.
        http: the aiohttp session (owned by the caller); ``None``: every request fails (no network).
        clock: time source of the pauses without a budget.
        budget: the exchange's rate budget on this IP (shared); ``None``: no limiting.
        max_concurrent: requests in flight (or waiting for their grant) at once (>= 1); background requests
            hold at most ``max(1, max_concurrent // 2)`` of them.
        timeout_s: total timeout of one HTTP request, s (waiting for the budget is not included).

    Raises:
        ValueError: ``max_concurrent < 1`` or ``timeout_s <= 0``.
    """

    def __init__(
        self,
        key: str,
        base_url: str,
        http: aiohttp.ClientSession | None,
        clock: Clock,
        budget: RateBudget | None,
        *,
        max_concurrent: int = 4,
        timeout_s: float = 10.0,
    ) -> None:
        if max_concurrent < 1 or not timeout_s > 0:
            raise ValueError("need max_concurrent >= 1 and timeout_s > 0")
        self.key = key
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path
        self._http = http
        self._clock = clock
        self.rate_budget = budget
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_concurrent)
        self._background_slots = asyncio.Semaphore(max(1, max_concurrent // 2))
        self._paused_until = 0.0
        self.requests = 0
        self.weight = 0
        self.background = 0
        self.errors = 0
        self.rate_limited = 0
        self.refused = 0
        self._waiting = 0

    def stats(self) -> RestStats:
        """An immutable snapshot."""
        budget = self.rate_budget
        if budget is None:
            return RestStats(
                key=self.key,
                requests=self.requests,
                weight=self.weight,
                errors=self.errors,
                rate_limited=self.rate_limited,
                budget=None,
                window_s=None,
                in_window=0,
                paused_for_s=max(0.0, self._paused_until - self._clock.monotonic()),
                waiting=self._waiting,
                background=self.background,
                refused=self.refused,
            )
        limiter = budget.limiter.stats()
        main = next(p for p in limiter.pools if p.name == budget.main_pool)
        return RestStats(
            key=self.key,
            requests=self.requests,
            weight=self.weight,
            errors=self.errors,
            rate_limited=self.rate_limited,
            budget=main.limit,
            window_s=main.window_s,
            in_window=main.local_in_window,
            paused_for_s=budget.paused_for_s(),
            waiting=self._waiting,
            background=self.background,
            refused=self.refused,
            mode=limiter.mode,
            pool=main.name,
        )

    def pause(self, seconds: float) -> None:
        """Without a budget: hold every request of this client for ``seconds`` (a 429/418 ``Retry-After``).
        With a budget the pause belongs to the budget (:meth:`RateBudget.feed`); this local pause holds this
        client's requests in addition."""
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)

    async def get(
        self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
    ) -> bytes:
        """Send ``request`` once a slot and the budget allow (see the module docstring); return the body.

        Args:
            request: path (appended to the base URL), params, weight (used only without a budget: the budget's
                rules price the request themselves).
            timeout_s: overrides the client's HTTP timeout for this request, s.
            background: a trade backfill: priority 10, background pools, at most half the slots.

        Raises:
            RestError: a transport error or timeout (``status`` ``None``); a status other than 200 (429/418 and the
                exchange's ban statuses also pause or ban the budget, ``retry_after_s`` = the pause); a request
                that can never be granted or finds the budget's line full (``status`` ``None``, raised before
                sending).
        """
        path = self._base_path + request.path
        self._waiting += 1
        admitted = False
        try:
            async with AsyncExitStack() as stack:
                if background:
                    await stack.enter_async_context(self._background_slots)
                await stack.enter_async_context(self._slots)
                grant = await self._admit(request, path, background)
                self._waiting -= 1
                admitted = True
                return await self._send(
                    request, path, grant, background, self._timeout_s if timeout_s is None else timeout_s
                )
        finally:
            if not admitted:
                self._waiting -= 1

    async def _admit(self, request: RestRequest, path: str, background: bool) -> Grant | None:
        """Wait for a local pause to end, then for the budget's grant (``None`` without a budget)."""
        while (left := self._paused_until - self._clock.monotonic()) > 0:
            await self._clock.sleep(left)
        budget = self.rate_budget
        if budget is None:
            return None
        try:
            return await budget.acquire(
                "GET",
                path,
                request.params,
                priority=BACKGROUND_PRIORITY if background else SNAPSHOT_PRIORITY,
                background=background,
            )
        except (ValueError, LineFull) as exc:
            self.refused += 1
            self.errors += 1
            raise RestError(f"GET {self.base_url}{request.path}: refused before sending: {exc}") from exc

    async def _send(
        self, request: RestRequest, path: str, grant: Grant | None, background: bool, timeout_s: float
    ) -> bytes:
        url = self.base_url + request.path
        self.requests += 1
        self.background += background
        budget = self.rate_budget
        if grant is not None and budget is not None and grant.weights:
            # the main pool's weight; a request outside it (OKX's per-endpoint pools) counts its own pool's
            main = grant.weights.get(budget.main_pool)
            self.weight += main if main is not None else next(iter(grant.weights.values()))
        else:
            self.weight += request.weight
        if self._http is None:
            self.errors += 1
            raise RestError(f"GET {url}: no HTTP session")
        try:
            async with self._http.get(
                url, params=request.params, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except TimeoutError as exc:
            self.errors += 1
            raise RestError(f"GET {url}: no answer within {timeout_s:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            self.errors += 1
            raise RestError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        if grant is not None and budget is not None:
            limited_s = await budget.feed(grant, status, headers, path=path)
        elif status in (418, 429):
            asked = _retry_after(headers.get("Retry-After"))
            limited_s = DEFAULT_PAUSE_S if asked is None else asked
            self.pause(limited_s)
            _log.warning(
                "%s: HTTP %d from %s; pausing every request to this host for %.0f s",
                self.key,
                status,
                request.path,
                limited_s,
            )
        else:
            limited_s = None
        if status == 200:
            return body
        self.errors += 1
        if limited_s is not None:
            self.rate_limited += 1
            raise RestError(f"HTTP {status} from {url}", status, limited_s)
        raise RestError(f"HTTP {status} from {url}: {body[:200]!r}", status)
